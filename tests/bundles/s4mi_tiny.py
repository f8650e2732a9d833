"""Tiny overrides of the s4mi bundle (tiny phantoms, 32 px, 1-2 epochs, small networks) for the bundle tests."""

from __future__ import annotations

from pathlib import Path

from monai.bundle import ConfigWorkflow

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "s4mi"
CONFIGS = BUNDLE / "configs"

#: architecture overrides shared by every stage (and by inference)
ARCH = {"image_size": [32, 32], "cnn_arch": "resnet18", "vit_arch": "vit_tiny", "vit_patch_size": 8,
        "seg_image_size": [64, 64], "unet_features": [4, 4, 8, 8, 16, 4], "swin_feature_size": 12}


def tiny(root: Path, cohort: str = "skin", **extra) -> dict:
    """Overrides for a tiny run of both workflows writing below ``root`` (phantoms in ``root/data``)."""
    over = {
        "bundle_root": str(BUNDLE), "phantom_dir": str(root / "data" / cohort), "output_dir": str(root / "run"),
        "cohort": cohort, "phantom_preset": "tiny", "num_workers": 0, "ssl_epochs": 1, "ssl_batch_size": 8,
        "finetune_epochs": 1, "finetune_batch_size": 8, "dino_presets#s4mi#output_dim": 64,
        "cls_methods": ["cass", "dino", "supervised"], "cls_backbones": ["cnn", "vit"], "cls_fractions": [0.5],
        "seg_methods": ["cross_teaching", "supervised_unet"], "seg_fractions": [0.5], "seg_batch_size": 8,
        "seg_max_iterations": 4, **ARCH,
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
