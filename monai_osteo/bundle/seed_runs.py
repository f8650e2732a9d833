"""Run a bundle's ``train.json`` once per seed (the bundles' ``scripts/seeds.py`` use this), each run in its own
folder; finished stages are skipped by ``run_stages``, so an interrupted sweep resumes where it stopped."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["bundle_configs", "run_bundle_seed"]

logger = logging.getLogger(__name__)


def bundle_configs(bundle: str | os.PathLike, preset: str = "quick", ablations: Sequence[str] = ()) -> list[str]:
    """``train.json`` (+ ``quick.json`` for the quick preset) + ``configs/ablations/<a>`` for each ablation."""
    cfg = Path(bundle) / "configs"
    if preset not in ("quick", "paper"):
        raise ValueError(f"preset must be 'quick' or 'paper', got {preset!r}.")
    files = [cfg / "train.json", *([cfg / "quick.json"] if preset == "quick" else [])]
    return [str(f) for f in files] + [str(cfg / "ablations" / a) for a in ablations]


def run_bundle_seed(bundle: str | os.PathLike, configs: Sequence[str], seed: int, output_dir: str | os.PathLike,
                    overrides: Sequence[str] = ()) -> None:
    """``python -m monai.bundle run`` of ``configs`` with ``--seed seed --output_dir output_dir`` and the extra
    ``--id value`` pairs ``overrides``, in a child process (a failure raises ``CalledProcessError``)."""
    cfg = Path(bundle) / "configs"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", json.dumps(list(configs)).replace('"', "'"),
           "--meta_file", str(cfg / "metadata.json"), "--logging_file", str(cfg / "logging.conf"),
           "--seed", str(seed), "--output_dir", str(output_dir), *overrides]
    logger.info("seed %d: %s", seed, output_dir)
    subprocess.run(cmd, check=True)
