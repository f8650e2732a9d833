"""Shared plumbing of the hand_osteo stages: datalist resolution, split selection, atomic writes, devices."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.data import load_decathlon_datalist

from monai_osteo.data.phantoms import ensure_hand_cohort
from monai_osteo.data.phantoms.anatomy import BONE_LABELS

__all__ = ["BONES", "SPLIT_KEYS", "atomic_save", "atomic_write_json", "atomic_write_text", "datalist_items",
           "resolve_datalist", "resolve_device"]

logger = logging.getLogger("monai_osteo.hand_osteo")

#: the 7 target bones in label order (ulna 1, radius 2, M1..M5 3..7)
BONES: tuple[str, ...] = tuple(sorted(BONE_LABELS, key=BONE_LABELS.get))
#: datalist keys of the labelled splits
SPLIT_KEYS = ("training", "validation", "test")


def resolve_datalist(dataset_dir: str | os.PathLike, datalist: str | None = None, phantom_preset: str | None = "quick",
                     seed: int = 0, **phantom_overrides) -> Path:
    """Path of the datalist to use: the user's, or the embedded phantom cohort (generated on first use).

    Args:
        dataset_dir: folder of the data. If it holds ``datalist`` (default ``datalist.json``) that file is used.
        datalist: file name or path of a MONAI datalist; relative names are looked up in ``dataset_dir``.
        phantom_preset: when no datalist exists, generate the phantom hand cohort of this preset
            (``monai_osteo.data.phantoms.PRESETS``) into ``dataset_dir``; ``None`` raises instead.
        seed: phantom seed.
        phantom_overrides: e.g. ``subjects``, ``unlabeled``, ``height``.
    """
    root = Path(dataset_dir).expanduser()
    path = Path(datalist).expanduser() if datalist else root / "datalist.json"
    if not path.is_absolute() and datalist:
        path = root / path
    if path.is_file() and (phantom_preset is None or datalist or not (root / "cohort.json").is_file()):
        return path
    if phantom_preset is None:
        raise FileNotFoundError(f"{path}: no datalist found. Point dataset_dir at a folder holding datalist.json "
                                "(MONAI decathlon format, see bundles/hand_osteo/docs/README.md) or set phantom_preset "
                                "to generate the phantom cohort.")
    return ensure_hand_cohort(root, phantom_preset, seed=seed, **phantom_overrides)


def datalist_items(datalist: str | os.PathLike, keys: Sequence[str], splits: Sequence[str] | None = None,
                   limit: int | None = None) -> list[dict]:
    """Items of the datalist ``keys`` (absolute paths) whose ``split`` (default: the key) is in ``splits``.

    Each item gets ``set`` = the datalist key it came from. ``limit`` keeps at most that many per key.
    """
    raw = json.loads(Path(datalist).read_text())
    out = []
    for key in keys:
        if key not in raw:
            continue
        items = load_decathlon_datalist(datalist, data_list_key=key) if raw[key] else []
        chosen = [dict(d, set=key) for d in items if splits is None or d.get("split", key) in splits]
        out.extend(chosen[:limit])
    return out


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto" -> CUDA if available else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file next to ``path`` and rename it (never half-written)."""
    return _atomic(Path(path), lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    """JSON (indent 2, NaN written as null-free ``NaN`` per Python's json) written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` written atomically."""
    return _atomic(Path(path), lambda f: torch.save(obj, f))


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")
