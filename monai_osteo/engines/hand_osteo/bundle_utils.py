"""Small helpers the hand_osteo bundle configs call: bundle root, input listing, run manifest."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from monai_osteo.data import SUPPORTED_SUFFIXES
from monai_osteo.engines.hand_osteo.common import atomic_write_json

__all__ = ["find_bundle_root", "list_radiographs", "write_run_manifest"]

logger = logging.getLogger("monai_osteo.hand_osteo")


def find_bundle_root(name: str = "hand_osteo") -> str:
    """The bundle folder: the current directory if it is the bundle, else ``bundles/<name>`` below it."""
    cwd = Path.cwd()
    if (cwd / "configs" / "metadata.json").is_file() and cwd.name == name:
        return str(cwd)
    candidate = cwd / "bundles" / name
    if (candidate / "configs").is_dir():
        return str(candidate)
    raise FileNotFoundError(f"bundle {name!r} not found from {cwd}: run from the repository root or the bundle folder, "
                            "or pass --bundle_root PATH.")


def list_radiographs(inputs: str | os.PathLike | list) -> list[str]:
    """Radiograph files of a folder (recursive, supported suffixes, DICOM without suffix included), a file, or a list.

    A path that does not exist raises ``FileNotFoundError`` naming it.
    """
    if isinstance(inputs, (list, tuple)):
        return [str(p) for p in inputs]
    path = Path(inputs).expanduser()
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
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


def write_run_manifest(output_dir: str | os.PathLike, segmentation, patches, ssl, probe) -> dict:
    """Copy the final models to ``output_dir`` (``model.pt`` classifier, ``segmentation.pt``) and write ``run.json``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"classifier": str(out / "model.pt"), "patches": str(patches.output_dir),
                "probe_spatial_size": probe.spatial_size, "probe": str(probe.output_dir),
                "ssl": str(ssl.output_dir) if ssl.enabled else None, "patch_mode": patches.mode}
    _copy(probe.checkpoint, out / "model.pt")
    if patches.mode == "bones":
        _copy(segmentation.checkpoint, out / "segmentation.pt")
        manifest["segmentation"] = str(out / "segmentation.pt")
    atomic_write_json(out / "run.json", manifest)
    return manifest


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
