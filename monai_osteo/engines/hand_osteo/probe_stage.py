"""Stage 4: linear probe on the frozen encoder (or, for the supervised-only ablation, end-to-end training).

Bone patches are labelled with their subject's label; the model kept is the one with the best validation
subject macro-F1, where a subject's decision is the argmax of its bones' mean class probability (Eq. 10).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import DataLoader
from monai.transforms import Compose, EnsureTyped, Resized
from monai.utils import set_determinism
from tqdm import tqdm

from monai_osteo.engines.hand_osteo.common import atomic_save, atomic_write_json, resolve_device
from monai_osteo.engines.hand_osteo.datasets import BonePatchDataset, LoadBonePatchd, ShuffleSampler
from monai_osteo.engines.hand_osteo.stage import PipelineStage
from monai_osteo.metrics.screening import screening_metrics
from monai_osteo.metrics.subject import aggregate_subjects, subject_macro_f1
from monai_osteo.transforms.presets import hand_view_augmentationd

__all__ = ["LinearProbeStage", "probe_transform"]

logger = logging.getLogger("monai_osteo.hand_osteo")


def probe_transform(spatial_size: int, augment: bool = False) -> Compose:
    """Cached patch -> (1, s, s) float32 tensor (bilinear, antialiased); ``augment`` adds the paper's view preset."""
    xs = [LoadBonePatchd(keys="image"), Resized(keys="image", spatial_size=(spatial_size, spatial_size),
                                                mode="bilinear", anti_aliasing=True)]
    if augment:
        xs.append(hand_view_augmentationd(keys="image", spatial_size=spatial_size))
    xs.append(EnsureTyped(keys="image", dtype=torch.float32, track_meta=False))
    return Compose(xs)


class LinearProbeStage(PipelineStage):
    """Train the classifier head on bone patches and select it on the validation subjects' macro-F1.

    With ``train_encoder=False`` (the method) the encoder is loaded from the SSL checkpoint and frozen; its
    features of every labelled patch are computed once, standardised with the training mean and std, and a
    linear layer is trained with class-balanced cross-entropy (Adam); the standardisation is folded into the
    layer, so the saved :class:`~monai_osteo.networks.nets.BoneClassifier` maps a patch straight to logits.
    With ``train_encoder=True`` (the supervised-only ablation, Table 6) the whole network is trained from
    ``ssl_checkpoint`` (``None``: random initialisation) on augmented patches.

    Outputs: ``model.pt`` (classifier state dict), ``predictions.json`` (per bone and per subject, all splits),
    ``metrics.json`` (validation macro-F1, best epoch, per-split subject metrics).

    Args:
        patches: the :class:`~monai_osteo.engines.hand_osteo.patch_stage.BonePatchStage`.
        classifier: a ``BoneClassifier``.
        output_dir: folder of the outputs.
        ssl_checkpoint: SSL network state dict to initialise the encoder from (``None``: random).
        ssl_stage: optional object whose settings are part of this stage's (the SSL trainer's summary).
        spatial_size: patch side the encoder sees (the SSL global view size).
        max_epochs, lr, weight_decay, batch_size: training settings.
        train_encoder: train end-to-end (supervised-only ablation) instead of the linear probe.
        class_balanced: weight the cross-entropy by inverse class frequency.
        seed: seed.
        device: "auto", "cpu", "cuda".
        resume: skip when done with the same settings.

    - [0] hand_xray_osteoporosis_journal, §"Classification" and Eq. 10, Table 6.
    """

    name = "probe"

    def __init__(self, patches, classifier: torch.nn.Module, output_dir: str | os.PathLike,
                 ssl_checkpoint: str | os.PathLike | None = None, ssl_settings: dict | None = None,
                 spatial_size: int = 224, max_epochs: int = 100, lr: float = 1e-3, weight_decay: float = 1e-4,
                 batch_size: int = 64, train_encoder: bool = False, class_balanced: bool = True, seed: int = 0,
                 device: str = "auto", resume: bool = True) -> None:
        super().__init__(output_dir, resume)
        if spatial_size < 8 or max_epochs < 1 or lr <= 0 or batch_size < 1:
            raise ValueError(f"spatial_size >= 8, max_epochs >= 1, lr > 0, batch_size >= 1 needed, got "
                             f"{spatial_size}, {max_epochs}, {lr}, {batch_size}.")
        self.patches, self.classifier = patches, classifier
        self.ssl_checkpoint = None if ssl_checkpoint is None else Path(ssl_checkpoint)
        self.ssl_settings = ssl_settings
        self.spatial_size, self.max_epochs, self.lr = int(spatial_size), int(max_epochs), float(lr)
        self.weight_decay, self.batch_size = float(weight_decay), int(batch_size)
        self.train_encoder, self.class_balanced, self.seed = bool(train_encoder), bool(class_balanced), int(seed)
        self.device = resolve_device(device)

    @property
    def checkpoint(self) -> Path:
        return self.output_dir / "model.pt"

    def settings(self) -> dict:
        return {"patches": self.patches.settings(), "ssl": self.ssl_settings,
                "ssl_checkpoint": None if self.ssl_checkpoint is None else str(self.ssl_checkpoint.resolve()),
                "spatial_size": self.spatial_size, "max_epochs": self.max_epochs, "lr": self.lr,
                "weight_decay": self.weight_decay, "batch_size": self.batch_size,
                "train_encoder": self.train_encoder, "class_balanced": self.class_balanced, "seed": self.seed}

    # ------------------------------------------------------------------ helpers
    def _records(self, split: str) -> list[dict]:
        recs = self.patches.records("probe", [split])
        if not recs:
            raise ValueError(f"no labelled bone patches for split {split!r} in {self.patches.output_dir}; the probe "
                             "needs training and validation subjects with labels (see docs/README.md).")
        return recs

    def _loader(self, records, augment: bool, shuffle: bool) -> DataLoader:
        ds = BonePatchDataset(_Fixed(records), role="probe", transform=probe_transform(self.spatial_size, augment))
        sampler = ShuffleSampler(ds, seed=self.seed, shuffle=shuffle)
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, num_workers=0)

    @torch.no_grad()
    def _features(self, encoder, records) -> torch.Tensor:
        encoder.eval()
        feats = []
        for batch in tqdm(self._loader(records, False, False), desc="probe features", unit="batch", disable=None,
                          leave=False):
            feats.append(encoder(batch["image"].to(self.device)).float().cpu())
        return torch.cat(feats)

    def _class_weights(self, labels: torch.Tensor, n_classes: int) -> torch.Tensor | None:
        if not self.class_balanced:
            return None
        counts = torch.bincount(labels, minlength=n_classes).float().clamp_min(1)
        return (counts.sum() / (n_classes * counts)).to(self.device)

    def _subjects(self, records, probs: np.ndarray) -> list[dict]:
        return aggregate_subjects([{**r, "probs": p} for r, p in zip(records, probs)])

    # ------------------------------------------------------------------ run
    def _run(self) -> dict:
        set_determinism(self.seed)
        start = time.perf_counter()
        net = self.classifier.to(self.device)
        if self.ssl_checkpoint is not None:
            net.load_encoder(torch.load(self.ssl_checkpoint, map_location="cpu"))
        recs = {s: self._records(s) for s in ("training", "validation")}
        test = self.patches.records("probe", ["test"])
        if test:
            recs["test"] = test
        n_classes = net.fc.out_features
        if self.train_encoder:
            best = self._train_end_to_end(net, recs, n_classes)
        else:
            best = self._train_linear(net, recs, n_classes)
        net.load_state_dict(best["state"])
        atomic_save(net.state_dict(), self.checkpoint)
        probs = {s: self.predict(recs[s]) for s in recs}
        bones = {s: [{k: r[k] for k in ("subject_id", "bone", "label", "split", "image_id")} | {"probs": p.tolist()}
                     for r, p in zip(recs[s], probs[s])] for s in recs}
        subjects = {s: self._subjects(recs[s], probs[s]) for s in recs}
        atomic_write_json(self.output_dir / "predictions.json", {"bones": bones, "subjects": subjects})
        metrics = {"best_epoch": best["epoch"], "val_macro_f1": best["f1"], "train_encoder": self.train_encoder,
                   "train_seconds": round(time.perf_counter() - start, 1)}
        for s, subs in subjects.items():
            metrics[s] = screening_metrics([x["label"] for x in subs], [x["probability"] for x in subs])
        atomic_write_json(self.output_dir / "metrics.json", metrics)
        logger.info("probe: best epoch %d, val subject macro-F1 %.3f, val AUC %.3f%s", best["epoch"], best["f1"],
                    metrics["validation"]["auc"],
                    f", test AUC {metrics['test']['auc']:.3f}" if "test" in metrics else "")
        return metrics

    @torch.no_grad()
    def predict(self, records: Sequence[dict]) -> np.ndarray:
        """Class probabilities (N, C) of the patch records with the current classifier."""
        net = self.classifier.to(self.device).eval()
        out = []
        for batch in self._loader(list(records), False, False):
            out.append(torch.softmax(net(batch["image"].to(self.device)).float(), 1).cpu())
        return torch.cat(out).numpy()

    def _train_linear(self, net, recs, n_classes: int) -> dict:
        net.freeze_encoder()
        feats = {s: self._features(net.backbone, recs[s]) for s in ("training", "validation")}
        mu, sd = feats["training"].mean(0), feats["training"].std(0).clamp_min(1e-6)
        x_tr = ((feats["training"] - mu) / sd).to(self.device)
        x_va = ((feats["validation"] - mu) / sd).to(self.device)
        y_tr = torch.as_tensor([r["label"] for r in recs["training"]], device=self.device)
        fc = torch.nn.Linear(x_tr.shape[1], n_classes).to(self.device)
        opt = torch.optim.Adam(fc.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        weights = self._class_weights(y_tr, n_classes)
        g = torch.Generator().manual_seed(self.seed)
        best = {"f1": -1.0, "epoch": 0, "fc": None}
        for epoch in range(1, self.max_epochs + 1):
            fc.train()
            for idx in torch.randperm(len(x_tr), generator=g).split(self.batch_size):
                idx = idx.to(self.device)
                loss = F.cross_entropy(fc(x_tr[idx]), y_tr[idx], weight=weights)
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                pv = torch.softmax(fc(x_va), 1).cpu().numpy()
            f1 = subject_macro_f1(self._subjects(recs["validation"], pv))
            if f1 > best["f1"]:
                best = {"f1": f1, "epoch": epoch, "fc": copy.deepcopy(fc.state_dict())}
        fc.load_state_dict(best["fc"])
        # fold the standardisation into the layer: w' = w / sd, b' = b - w' mu
        w = fc.weight.detach().cpu() / sd
        b = fc.bias.detach().cpu() - w @ mu
        net.fc.weight.data.copy_(w.to(net.fc.weight.device))
        net.fc.bias.data.copy_(b.to(net.fc.bias.device))
        logger.info("probe: linear layer, best validation subject macro-F1 %.3f at epoch %d", best["f1"],
                    best["epoch"])
        return {"f1": best["f1"], "epoch": best["epoch"], "state": copy.deepcopy(net.state_dict())}

    def _train_end_to_end(self, net, recs, n_classes: int) -> dict:
        loader = self._loader(recs["training"], True, True)
        y_tr = torch.as_tensor([r["label"] for r in recs["training"]])
        weights = self._class_weights(y_tr.to(self.device), n_classes)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best = {"f1": -1.0, "epoch": 0, "state": copy.deepcopy(net.state_dict())}
        for epoch in range(1, self.max_epochs + 1):
            net.train()
            for batch in tqdm(loader, desc=f"supervised epoch {epoch}", unit="batch", disable=None, leave=False):
                loss = F.cross_entropy(net(batch["image"].to(self.device)), batch["label"].to(self.device).long(),
                                       weight=weights)
                opt.zero_grad()
                loss.backward()
                opt.step()
            f1 = subject_macro_f1(self._subjects(recs["validation"], self.predict(recs["validation"])))
            logger.info("supervised epoch %d/%d: loss %.4f, val subject macro-F1 %.3f", epoch, self.max_epochs,
                        float(loss.detach()), f1)
            if f1 > best["f1"]:
                best = {"f1": f1, "epoch": epoch, "state": copy.deepcopy(net.state_dict())}
        return best


class _Fixed:
    """A fixed list of patch records behind the ``records`` interface of the patch stage."""

    def __init__(self, records: list[dict]) -> None:
        self._records = records

    def records(self, role=None, splits=None) -> list[dict]:
        return self._records
