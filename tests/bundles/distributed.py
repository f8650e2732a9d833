"""Run a bundle's multi_gpu_train.json with 2 CPU processes (torch.distributed.run, gloo) for the bundle tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_distributed(configs: Path, extra: dict[str, dict], folder: Path, nproc: int = 2) -> None:
    """``train.json`` + ``multi_gpu_train.json`` of ``configs`` and the ``extra`` overrides (name -> content, written
    as JSON files into ``folder``, layered in order) run by ``nproc`` processes; fails with the end of stderr."""
    files = [str(configs / "train.json"), str(configs / "multi_gpu_train.json")]
    for name, content in extra.items():
        (folder / name).write_text(json.dumps(content))
        files.append(str(folder / name))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", f"--nproc_per_node={nproc}",
           "-m", "monai.bundle", "run", "--config_file", json.dumps(files).replace('"', "'"),
           "--meta_file", str(configs / "metadata.json"), "--logging_file", str(configs / "logging.conf")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
