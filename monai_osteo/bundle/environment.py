"""The software a run used: Python and package versions, for metrics files and logs."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata

__all__ = ["versions"]

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
