"""Tiny overrides of the hand_osteo and hand_bone_segmentation bundles (1 epoch, small sizes) for the bundle tests."""

from __future__ import annotations

from pathlib import Path

from monai.bundle import ConfigWorkflow

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
BUNDLE = BUNDLES / "hand_osteo"
CONFIGS = BUNDLE / "configs"
SEG_CONFIGS = BUNDLES / "hand_bone_segmentation" / "configs"

#: architecture overrides shared by train, evaluate and inference
ARCH = {"seg_spatial_size": [64, 48], "seg_channels": [4, 8, 16], "seg_head_channels": 4, "seg_num_decoders": 2,
        "seg_num_samples": 2, "seg_latent_dim": 2, "backbone": "resnet18", "global_size": 32}
#: the same architecture under the segmentation bundle's own names
SEG_ARCH = {"spatial_size": [64, 48], "channels": [4, 8, 16], "head_channels": 4, "num_decoders": 2, "num_samples": 2,
            "latent_dim": 2}


def tiny_train(root: Path, **extra) -> dict:
    """Overrides for a ~15 s train run writing below ``root`` (phantom cohort in ``root/data``)."""
    over = {
        "bundle_root": str(BUNDLE), "phantom_dir": str(root / "data"), "output_dir": str(root / "run"),
        "phantom_preset": "quick", "phantom_overrides": {"subjects": 40, "unlabeled": 12, "height": 192},
        "num_workers": 0, "seg_epochs": 1, "seg_batch_size": 4, "local_size": 16, "ssl_batch_size": 8,
        "ssl_epochs": 1, "ssl_warmup_epochs": 0, "ssl_hidden_dim": 32, "ssl_projection_dim": 16,
        "ssl_num_prototypes": 8, "probe_epochs": 3, **ARCH,
        # 6 validation subjects: the screening gates are calibrated on the training radiographs too
        "stage_overrides#gates#gate_calibration_split": ["training", "validation"],
    }
    over.update(extra)
    return over


def workflow(configs, workflow_type: str | None, config_dir: Path = CONFIGS, **override) -> ConfigWorkflow:
    """An initialised ``ConfigWorkflow`` of ``configs`` (file names in ``config_dir``, layered in order)."""
    files = [str(config_dir / c) for c in ([configs] if isinstance(configs, str) else configs)]
    wf = ConfigWorkflow(config_file=files, meta_file=str(config_dir / "metadata.json"),
                        logging_file=str(config_dir / "logging.conf"), workflow_type=workflow_type, **override)
    wf.initialize()
    return wf
