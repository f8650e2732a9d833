"""Tiny overrides of the medsass bundle (1 epoch, 32-px images, every protocol kind) for the bundle tests."""

from __future__ import annotations

from pathlib import Path

from monai.bundle import ConfigWorkflow

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "medsass"
CONFIGS = BUNDLE / "configs"

#: architecture shared by every stage of a tiny run
ARCH = {"image_size": [32, 32], "backbone": "resnet18", "decoder_channels": [16, 8, 8]}

#: one row of every protocol kind; fractions kept few (each trained row is two stages)
TINY_PROTOCOLS = [
    {"name": "zero_shot_ed", "init": "medsass", "transfer": "full", "train": False},
    {"name": "zero_shot_e", "init": "medsass", "transfer": "encoder", "train": False},
    {"name": "zero_shot_e_dino", "init": "dino", "transfer": "encoder", "train": False},
    {"name": "frozen_e", "init": "medsass", "transfer": "encoder", "freeze_encoder": True, "fractions": [1.0]},
    {"name": "finetune_scratch", "init": None, "transfer": "scratch", "fractions": [1.0]},
    {"name": "finetune_e", "init": "medsass", "transfer": "encoder"},
    {"name": "finetune_ed", "init": "medsass", "transfer": "full", "fractions": [1.0]},
    {"name": "finetune_byol", "init": "byol", "transfer": "encoder", "fractions": [0.1]},
    {"name": "finetune_simsiam", "init": "simsiam", "transfer": "encoder", "fractions": [0.1]},
]


def tiny_train(root: Path, **extra) -> dict:
    """Overrides for a ~1 min train.json run below ``root`` (the skin tiny phantom in ``root/data``)."""
    over = {
        "bundle_root": str(BUNDLE), "phantom_dir": str(root / "data"), "output_dir": str(root / "run"),
        "cohort": "skin", "phantom_preset": "tiny", "num_workers": 0, "batch_size": 8, "pretrain_epochs": 1,
        "finetune_epochs": 1, "ssl_epochs": 1, "ssl_batch_size": 8, "ssl_hidden_dim": 32, "ssl_projection_dim": 16,
        "ssl_local_size": 16, "ssl_num_local": 2, "ssl_output_dim": 64, "fractions": [0.1, 1.0],
        "protocols": TINY_PROTOCOLS,
        "report_examples": 2, **ARCH,
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
