"""The software a run used: Python and package versions, for metrics files and logs."""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Sequence
from importlib import metadata

__all__ = ["log_run_info", "versions"]

PACKAGES = ("torch", "monai", "lightly", "numpy", "monai_osteo")


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """``{"python": ..., package: version}`` of the installed distributions (``None`` for one not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def log_run_info(seed: int, output_dir: str, name: str = "hand_osteo") -> dict:
    """Log (``monai_osteo.bundle``, INFO) the seed, the package versions and the output folder a run starts with, so
    that a console log says what produced its numbers; returns ``{"seed", **versions()}``."""
    info = {"seed": int(seed), **versions()}
    logging.getLogger("monai_osteo.bundle").info("%s: seed and versions %s; outputs in %s", name, json.dumps(info),
                                                 output_dir)
    return info
