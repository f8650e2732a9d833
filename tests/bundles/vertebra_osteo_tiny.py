"""Tiny overrides of the vertebra_osteo bundle (1-2 epochs, 32³ ROIs, a narrow ResNet-34) for the bundle tests."""

from __future__ import annotations

from pathlib import Path

from monai.bundle import ConfigWorkflow

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "vertebra_osteo"
CONFIGS = BUNDLE / "configs"

#: the network and ROI of every tiny stage
ARCH = {"roi_size": [32, 32, 32], "roi_spacing": 1.5, "widen_factor": 0.125, "num_prototypes": 16,
        "ssl_projection_dim": 16}


def tiny_train(root: Path, **extra) -> dict:
    """Overrides for a ~1 min train.json run below ``root`` (the tiny phantom in ``root/data``)."""
    over = {
        "bundle_root": str(BUNDLE), "phantom_dir": str(root / "data"), "output_dir": str(root / "run"),
        "phantom_preset": "tiny", "num_workers": 0, "batch_size": 16, "ssl_batch_size": 16, "epochs": 2,
        "warmup_epochs": 1, "ssl_epochs": 2, "ssl_warmup_epochs": 1, "learning_rate": 1e-3, "ssl_lr": 1e-3,
        "unlabeled_limit": 120, **ARCH,
    }
    over.update(extra)
    return over


def workflow(configs, workflow_type: str | None, **override) -> ConfigWorkflow:
    """An initialised ``ConfigWorkflow`` of ``configs`` (file names in the bundle's configs, layered in order)."""
    files = [str(CONFIGS / c) for c in ([configs] if isinstance(configs, str) else configs)]
    wf = ConfigWorkflow(config_file=files, meta_file=str(CONFIGS / "metadata.json"),
                        logging_file=str(CONFIGS / "logging.conf"), workflow_type=workflow_type, **override)
    wf.initialize()
    return wf
