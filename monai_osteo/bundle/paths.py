"""Where a bundle lives, and which radiograph files an inference run reads."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from monai_osteo.data import SUPPORTED_SUFFIXES

__all__ = ["find_bundle_root", "list_radiographs", "output_id", "output_name_formatter"]

logger = logging.getLogger("monai_osteo.bundle")


def find_bundle_root(name: str) -> str:
    """The bundle folder: the current directory if it is the bundle, else ``bundles/<name>`` below it."""
    cwd = Path.cwd()
    if (cwd / "configs" / "metadata.json").is_file() and cwd.name == name:
        return str(cwd)
    candidate = cwd / "bundles" / name
    if (candidate / "configs").is_dir():
        return str(candidate)
    raise FileNotFoundError(f"bundle {name!r} not found from {cwd}: run from the repository root or the bundle folder, "
                            "or pass --bundle_root PATH.")


def list_radiographs(inputs: str | os.PathLike | list, missing_ok: bool = False) -> list[str]:
    """Radiograph files of a folder (recursive, supported suffixes, DICOM without suffix included), a file, or a list.

    A path that does not exist raises ``FileNotFoundError`` naming it (``missing_ok``: gives an empty list, so that
    an inference config can be built and property-checked before any input exists).
    """
    if isinstance(inputs, (list, tuple)):
        return [str(p) for p in inputs]
    path = Path(inputs).expanduser()
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        if missing_ok:
            return []
        raise FileNotFoundError(f"{path}: no such file or folder of radiographs; set dataset_dir (inference) to a "
                                "folder of DICOM/PNG/TIFF/NIfTI/NRRD radiographs, a file, or a list of files.")
    suffixes = {s.lower() for group in SUPPORTED_SUFFIXES.values() for s in group}
    files = []
    for p in sorted(path.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(path).parts):
            continue
        name = p.name.lower()
        # DICOM exports are often named by UID ("1.2.840...") or "IM0001" without a suffix: check the preamble
        if any(name.endswith(s) for s in suffixes) or _is_dicom(p):
            files.append(str(p))
    if not files:
        logger.warning("%s: no radiograph files found (suffixes %s)", path, sorted(suffixes))
    return files


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def output_id(source: str | os.PathLike, index: int | None = None) -> str:
    """Output name of an input that names neither the patient nor the file: ``r[<index>_]<sha256(path)[:8]>``."""
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:8]
    return f"r{index:05d}_{digest}" if index is not None else f"r{digest}"


def output_name_formatter(record_source: bool = False):
    """``output_name_formatter`` for MONAI's ``SaveImage(d)``: file names from :func:`output_id` unless
    ``record_source`` (then MONAI's default: the input's file name)."""
    from monai.data.folder_layout import default_name_formatter

    def _formatter(metadict: dict, saver) -> dict:
        if record_source:
            return default_name_formatter(metadict, saver)
        return {"subject": output_id(metadict.get("filename_or_obj", "")), "idx": metadict.get("patch_index")}

    return _formatter
