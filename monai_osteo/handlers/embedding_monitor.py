"""Online monitor of a self-supervised encoder: kNN and linear-probe screening AUC of its frozen features.

SSL losses say nothing about whether the features carry the label; a user wants to see, every few epochs,
whether pretraining helps. This handler does what lightly's ``BenchmarkModule`` does for Lightning (kNN on a
feature bank) for an ignite trainer, and adds a linear probe, both scored at the subject level (mean bone
probability, Eq. 10) because the screening decision is per subject.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from lightly.utils.benchmarking import knn_predict
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

__all__ = ["EmbeddingProbeMonitor", "subject_auc"]

logger = logging.getLogger("monai_osteo.handlers")


def subject_auc(scores: np.ndarray, labels: np.ndarray, subject_ids: np.ndarray) -> float:
    """ROC AUC of per-subject mean scores (Eq. 10 aggregation); NaN if one class is absent."""
    subjects = np.unique(subject_ids)
    s = np.array([scores[subject_ids == k].mean() for k in subjects])
    y = np.array([labels[subject_ids == k][0] for k in subjects])
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


class EmbeddingProbeMonitor:
    """Every ``interval`` epochs, score the frozen encoder's features of labelled patches; write the scores to
    ``engine.state.metrics`` so ``StatsHandler``/``TensorBoardStatsHandler`` (attached after it) log them.

    Features of ``bank_loader`` (labelled training patches) and ``val_loader`` (validation patches) are the
    encoder's outputs in eval mode (BatchNorm running statistics, no gradient); the trainer's network is put back
    in train mode afterwards. Two scores, both subject-level ROC AUC on the validation patches:

    - ``{prefix}_knn_auc``: weighted kNN on L2-normalised features (``lightly.utils.benchmarking.knn_predict``,
      ``k`` and temperature as Wu et al. 2018), the positive-class vote share as the score;
    - ``{prefix}_probe_auc``: a class-balanced logistic regression (scikit-learn, L2, ``C``) on standardised
      features, fitted on the bank.

    Why not a MONAI ``ValidationHandler`` + evaluator: both scores need the whole feature bank before any
    validation sample can be scored, which an evaluator's per-batch metrics do not provide.

    Args:
        encoder: the module to score (e.g. ``SSLNetwork.backbone``), or a callable returning it; (B, C, H, W)
            -> (B, D).
        bank_loader: labelled patches the kNN bank / probe are fitted on; batches hold ``image``, ``label``,
            ``subject_id``.
        val_loader: labelled patches scored; same keys.
        interval: epochs between evaluations (and always after the last epoch); 0 turns the monitor off (nothing
            is attached, the loaders are never read).
        knn_k: neighbours of the kNN.
        knn_t: temperature of the kNN similarity weights.
        probe_c: inverse L2 strength of the logistic probe.
        prefix: metric name prefix.
        image_key, label_key, subject_key: batch keys.
        device: where features are computed; default: the trainer's device (``engine.state.device`` or the
            encoder's parameters).
    """

    def __init__(self, encoder: torch.nn.Module | Callable[[], torch.nn.Module], bank_loader: Iterable,
                 val_loader: Iterable, interval: int = 1, knn_k: int = 20, knn_t: float = 0.1, probe_c: float = 0.1,
                 prefix: str = "val", image_key: str = "image", label_key: str = "label",
                 subject_key: str = "subject_id", device: str | torch.device | None = None) -> None:
        if int(interval) < 0:
            raise ValueError(f"interval must be >= 1 epoch, or 0 to turn the monitor off, got {interval!r}.")
        if int(knn_k) < 1 or float(knn_t) <= 0 or float(probe_c) <= 0:
            raise ValueError(f"knn_k must be >= 1 and knn_t, probe_c > 0, got {knn_k!r}, {knn_t!r}, {probe_c!r}.")
        self.encoder, self.bank_loader, self.val_loader = encoder, bank_loader, val_loader
        self.interval, self.knn_k, self.knn_t, self.probe_c = int(interval), int(knn_k), float(knn_t), float(probe_c)
        self.prefix, self.keys = prefix, (image_key, label_key, subject_key)
        self.device = None if device is None else torch.device(device)
        self.history: list[dict] = []

    def attach(self, engine: Engine) -> None:
        if self.interval == 0:
            return
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _module(self) -> torch.nn.Module:
        return self.encoder if isinstance(self.encoder, torch.nn.Module) else self.encoder()

    @torch.no_grad()
    def features(self, loader: Iterable, device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, D) float features, (N,) labels, (N,) subject ids of every batch of ``loader``."""
        net, (ik, lk, sk) = self._module(), self.keys
        feats, labels, sids = [], [], []
        for batch in loader:
            feats.append(net(torch.as_tensor(batch[ik]).to(device)).float().flatten(1).cpu())
            labels.append(torch.as_tensor(batch[lk]).reshape(-1).cpu())
            sids.extend(str(s) for s in batch[sk])
        return torch.cat(feats).numpy(), torch.cat(labels).numpy().astype(int), np.asarray(sids)

    def compute(self, device: torch.device | str = "cpu") -> dict[str, float]:
        """The two scores now (the encoder is evaluated in eval mode and left in the mode it was in)."""
        net = self._module()
        was_training = net.training
        net.eval()
        try:
            xb, yb, _ = self.features(self.bank_loader, torch.device(device))
            xv, yv, sv = self.features(self.val_loader, torch.device(device))
        finally:
            net.train(was_training)
        if len(np.unique(yb)) < 2:
            raise ValueError("bank_loader must hold patches of both classes to fit the kNN bank and the probe, got "
                             f"labels {sorted(set(yb.tolist()))}; use the labelled training patches.")
        bank = F.normalize(torch.from_numpy(xb), dim=1)
        query = F.normalize(torch.from_numpy(xv), dim=1)
        k = min(self.knn_k, len(xb))
        # knn_predict ranks classes; the positive vote share is recomputed the same way for a continuous score
        sim = query @ bank.T
        w, idx = sim.topk(k, dim=1)
        w = (w / self.knn_t).exp()
        votes = torch.zeros(len(xv), 2).scatter_add_(1, torch.from_numpy(yb)[idx].long(), w)
        knn_score = (votes[:, 1] / votes.sum(1)).numpy()
        top1 = knn_predict(query, bank.T.contiguous(), torch.from_numpy(yb).long(), 2, k, self.knn_t)[:, 0].numpy()
        scaler = StandardScaler().fit(xb)
        probe = LogisticRegression(C=self.probe_c, class_weight="balanced", max_iter=2000)
        probe.fit(scaler.transform(xb), yb)
        probe_score = probe.predict_proba(scaler.transform(xv))[:, 1]
        p = self.prefix
        return {f"{p}_knn_auc": subject_auc(knn_score, yv, sv), f"{p}_probe_auc": subject_auc(probe_score, yv, sv),
                f"{p}_knn_accuracy": float((top1 == yv).mean())}

    def __call__(self, engine: Engine) -> None:
        epoch, last = engine.state.epoch, engine.state.epoch == engine.state.max_epochs
        if epoch % self.interval and not last:
            return
        device = self.device or getattr(engine.state, "device", None) or getattr(engine, "device", None)
        if device is None:
            device = next(self._module().parameters()).device
        scores = self.compute(device)
        engine.state.metrics.update(scores)
        self.history.append({"epoch": epoch, **scores})
        logger.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
