"""SSL learns: the real SSL stage (train_ssl.json on train.json), on a tiny planted-signal bone-patch cache, lowers
its loss by a clear margin from the first epoch, and its features separate the planted classes (the stage's own
EmbeddingProbeMonitor) far better than the same features with shuffled subject labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events

from monai_osteo.data.readers.patches import save_bone_patch
from monai_osteo.handlers import EmbeddingProbeMonitor
from tests.bundles.hand_osteo_tiny import BUNDLE, workflow

SUBJECTS, VALIDATION, BONES, SIDE = 48, 18, ("radius", "M2", "M3"), 48
EPOCHS = 6
#: tiny SSL stage: the overrides a user would pass on the command line. LARS moves each weight tensor by about
#: ``ssl_lr * 1e-3`` of its norm per step (trust coefficient 1e-3): the paper's 0.3 needs thousands of steps, the
#: 30 steps here need a larger rate (with 0.3 the loss falls only 5-10% in 5-6 epochs, near the epoch-to-epoch noise).
TINY_SSL = {"backbone": "resnet10", "global_size": 32, "local_size": 16, "num_local": 2, "ssl_batch_size": 16,
            "ssl_epochs": EPOCHS, "ssl_warmup_epochs": 1, "ssl_lr": 4.0, "ssl_hidden_dim": 64,
            "ssl_projection_dim": 32, "ssl_monitor_interval": 1, "num_workers": 0, "device": "$torch.device('cpu')",
            "resume": False, "seed": 0}


def _bone(rng: np.random.Generator, positive: bool) -> np.ndarray:
    """(1, SIDE, SIDE) masked bone-like patch: zero background, bright cortex rim, textured medulla.

    Planted signal: positives (osteoporotic) have a thin cortex and a dark, sparse medulla; negatives a thick cortex
    and a bright, dense one. Nuisance: size, elongation, orientation, position, brightness, texture.
    """
    a, b = rng.uniform(13, 21), rng.uniform(8, 12)
    theta, (cy, cx) = rng.uniform(0, np.pi), rng.uniform(-3, 3, size=2) + (SIDE - 1) / 2
    yy, xx = np.mgrid[:SIDE, :SIDE].astype(float)
    u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
    thick = rng.uniform(1.0, 2.0) if positive else rng.uniform(4.0, 6.0)
    outer = (u / a) ** 2 + (v / b) ** 2 <= 1
    inner = (u / (a - thick)) ** 2 + (v / (b - thick)) ** 2 <= 1
    noise = rng.random((SIDE + 4, SIDE + 4))
    texture = sum(noise[i:i + SIDE, j:j + SIDE] for i in range(0, 5, 2) for j in range(0, 5, 2)) / 9  # smoothed
    medulla = (0.15 if positive else 0.45) + 0.5 * (texture - 0.5)
    img = np.where(inner, medulla, rng.uniform(0.8, 1.0)) * rng.uniform(0.85, 1.0)
    return (np.clip(img, 0.02, 1.0) * outer)[None].astype(np.float32)


def _patch_cache(root: Path, seed: int = 0) -> Path:
    """A bone-patch cache as the patch stage writes it (``patches/*.npy`` + ``index.json``), both classes in the
    training and the validation subjects; training subjects' patches serve pretraining and the probe."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(SUBJECTS) % 2)
    records = []
    for k, label in enumerate(labels):
        split = "validation" if k < VALIDATION else "training"
        image_id = subject = f"p{k:03d}"
        for bone in BONES:
            rel = f"patches/{image_id}_{bone}.npy"
            save_bone_patch(root / rel, _bone(rng, bool(label)))
            records.append({"image_id": image_id, "subject_id": subject, "label": int(label), "split": split,
                            "set": split, "patch": rel, "bone": bone,
                            "role": ["ssl", "probe"] if split == "training" else ["probe"]})
    (root / "index.json").write_text(json.dumps({"mode": "bones", "patches": records, "images": []}))
    return root


class _Relabelled:
    """The batches of ``loader`` with each patch's label replaced by ``labels[subject_id]``."""

    def __init__(self, loader, labels: dict) -> None:
        self.loader, self.labels = loader, labels

    def __iter__(self):
        for batch in self.loader:
            yield {**batch, "label": torch.tensor([self.labels[str(s)] for s in batch["subject_id"]])}


def _train_ssl(root: Path, **extra) -> tuple[list[list[float]], EmbeddingProbeMonitor, dict]:
    """Run the SSL stage on a planted-signal cache in ``root``: the losses of each epoch, the stage's monitor and
    the trainer's final metrics."""
    over = {"bundle_root": str(BUNDLE), "output_dir": str(root / "run"), "patches_dir": str(_patch_cache(root)),
            "ssl_dir": str(root / "run" / "ssl"), **TINY_SSL, **extra}
    wf = workflow(["train.json", "train_ssl.json"], "train", **over)
    trainer = wf.parser.get_parsed_content("train#trainer")
    losses: list[list[float]] = []

    @trainer.on(Events.EPOCH_STARTED)
    def _new_epoch(engine):
        losses.append([])

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine):
        out = engine.state.output
        losses[-1].extend(float(o["loss"]) for o in (out if isinstance(out, list) else [out]))

    wf.run()
    wf.finalize()
    assert trainer.state.epoch == trainer.state.max_epochs and (root / "run" / "ssl" / "model.pt").is_file()
    return losses, wf.parser.get_parsed_content("train#handlers#0"), dict(trainer.state.metrics)


def _shuffled_control(monitor: EmbeddingProbeMonitor, repeats: int = 5, seed: int = 0) -> list[float]:
    """kNN AUCs of the monitor's encoder with the subjects' labels permuted (same features, no label signal)."""
    labels = {}
    for loader in (monitor.bank_loader, monitor.val_loader):
        for batch in loader:
            labels.update(zip(map(str, batch["subject_id"]), torch.as_tensor(batch["label"]).tolist()))
    rng, subjects = np.random.default_rng(seed), sorted(labels)
    aucs = []
    for _ in range(repeats):
        perm = dict(zip(subjects, rng.permutation([labels[s] for s in subjects]).tolist()))
        control = EmbeddingProbeMonitor(monitor.encoder, _Relabelled(monitor.bank_loader, perm),
                                        _Relabelled(monitor.val_loader, perm))
        aucs.append(control.compute("cpu")["val_knn_auc"])
    return aucs


@pytest.fixture(scope="module")
def ssl_run(tmp_path_factory):
    losses, monitor, metrics = _train_ssl(tmp_path_factory.mktemp("ssl_learning"))
    return losses, monitor, metrics, _shuffled_control(monitor)


def test_ssl_loss_falls_from_the_first_epoch(ssl_run):
    losses = ssl_run[0]
    means = [float(np.mean(e)) for e in losses]
    assert len(losses) == EPOCHS and all(len(e) == len(losses[0]) > 0 for e in losses)
    assert np.isfinite(losses).all()
    # observed: -43% (5.38 -> 3.08; seed 1: -40%); with ssl_lr 0 the epoch means wander within +-5% of the first
    assert means[-1] < 0.8 * means[0], f"SSL loss did not fall by 20% from the first epoch: epoch means {means}"


def test_features_separate_planted_classes_better_than_shuffled_labels(ssl_run):
    _, monitor, metrics, shuffled = ssl_run
    assert [h["epoch"] for h in monitor.history] == list(range(1, EPOCHS + 1))
    final = monitor.history[-1]
    assert {k: metrics[k] for k in ("val_knn_auc", "val_probe_auc")} == {
        k: final[k] for k in ("val_knn_auc", "val_probe_auc")}  # what StatsHandler/TensorBoard log
    # observed: 1.0 and 1.0 (already at epoch 1: the phantom's signal is coarse); shuffled subject labels ~0.47-0.6
    assert final["val_knn_auc"] >= 0.9 and final["val_probe_auc"] >= 0.9, f"planted signal lost: {monitor.history}"
    assert final["val_knn_auc"] - np.mean(shuffled) >= 0.25, f"planted {final}, shuffled labels {shuffled}"
