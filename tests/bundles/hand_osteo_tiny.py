"""Tiny overrides of the hand_osteo bundle (1 epoch, small sizes) shared by the bundle tests."""

from __future__ import annotations

from pathlib import Path

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "hand_osteo"
CONFIGS = BUNDLE / "configs"

#: architecture overrides shared by train, evaluate and inference
ARCH = {"seg_spatial_size": [64, 48], "seg_channels": [4, 8, 16], "seg_head_channels": 4, "seg_num_decoders": 2,
        "seg_num_samples": 2, "seg_latent_dim": 2, "backbone": "resnet18", "global_size": 32}


def tiny_train(root: Path, **extra) -> dict:
    """Overrides for a ~15 s train run writing below ``root``."""
    over = {
        "bundle_root": str(BUNDLE), "dataset_dir": str(root / "data"), "output_dir": str(root / "run"),
        "phantom_preset": "quick", "phantom_overrides": {"subjects": 40, "unlabeled": 12, "height": 192},
        "num_workers": 0, "seg_epochs": 1, "seg_batch_size": 4, "local_size": 16, "ssl_batch_size": 8,
        "ssl_epochs": 1, "ssl_warmup_epochs": 0, "ssl_hidden_dim": 32, "ssl_projection_dim": 16,
        "ssl_num_prototypes": 8, "probe_epochs": 3, **ARCH,
    }
    over.update(extra)
    return over
