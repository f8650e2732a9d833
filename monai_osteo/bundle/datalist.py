"""Datalists of the bundles: the user's (never silently replaced) or the embedded phantom cohort when asked."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from monai.data import load_decathlon_datalist

__all__ = ["datalist_files", "datalist_items", "resolve_datalist", "segmentation_items"]

DOCS = "bundles/hand_osteo/docs/README.md"


def resolve_datalist(dataset_dir: str | os.PathLike | None = None, datalist_file: str | os.PathLike | None = None,
                     phantom_dir: str | os.PathLike | None = None, phantom_preset: str | None = "quick",
                     seed: int = 0, phantom_overrides: dict | None = None) -> str:
    """Path of the datalist a bundle trains on.

    - ``dataset_dir`` and ``datalist_file`` unset: the embedded phantom hand cohort of ``phantom_preset``, generated
      into ``phantom_dir`` (the bundle's own data folder) on first use.
    - otherwise the user's data: ``datalist_file`` (relative names are looked up in ``dataset_dir``), or
      ``dataset_dir/datalist.json``. A missing file is an error that names it; a phantom is never generated
      into a user's folder.

    Args:
        dataset_dir: folder of the user's data, or ``None`` for the embedded cohort.
        datalist_file: MONAI decathlon-style datalist (path or name within ``dataset_dir``).
        phantom_dir: folder of the embedded cohort.
        phantom_preset: ``monai_osteo.data.phantoms.PRESETS`` name.
        seed: phantom seed.
        phantom_overrides: e.g. ``{"subjects": 240, "unlabeled": 160}``.
    """
    if dataset_dir is None and datalist_file is None:
        if phantom_dir is None or phantom_preset is None:
            raise ValueError("no data: set dataset_dir to a folder holding datalist.json (or datalist_file), or set "
                             "phantom_dir and phantom_preset to use the embedded phantom cohort.")
        from monai_osteo.data.phantoms import ensure_hand_cohort

        return str(ensure_hand_cohort(Path(phantom_dir), phantom_preset, seed=seed, **(phantom_overrides or {})))
    if datalist_file is not None:
        path = Path(datalist_file).expanduser()
        if not path.is_absolute() and dataset_dir is not None:
            path = Path(dataset_dir).expanduser() / path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: datalist_file not found. Check the name, or drop datalist_file to use "
                                    f"datalist.json in dataset_dir (format: {DOCS}).")
        return str(path)
    path = Path(dataset_dir).expanduser() / "datalist.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset_dir has no datalist.json. Write one (MONAI decathlon format, see "
                                f"{DOCS}), pass --datalist_file, or leave dataset_dir unset to train on the embedded "
                                "phantom cohort.")
    return str(path)


def datalist_items(datalist: str | os.PathLike, keys: Sequence[str], splits: Sequence[str] | None = None,
                   limit: int | None = None) -> list[dict]:
    """Items of the datalist ``keys`` (absolute paths) whose ``split`` (default: the key) is in ``splits``.

    Each item gets ``set`` = the datalist key it came from; ``limit`` keeps at most that many per key.
    """
    raw = json.loads(Path(datalist).read_text())
    out = []
    for key in keys:
        if not raw.get(key):
            continue
        items = load_decathlon_datalist(datalist, data_list_key=key)
        chosen = [dict(d, set=key) for d in items if splits is None or d.get("split", key) in splits]
        out.extend(chosen[:limit])
    return out


def segmentation_items(datalist: str | os.PathLike, keys: Sequence[str], split: str,
                       limit: int | None = None) -> list[dict]:
    """``[{"image", "label", "label_weights"}]`` of the radiographs with annotator masks, for the segmentation bundle.

    ``label`` is the list of the M annotator label maps (``masks``), ``label_weights`` their weights beta; a record
    with a single ``label`` path (MONAI Label's datastore) is kept as it is (M = 1).
    """
    out = []
    for d in datalist_items(datalist, keys, [split], limit):
        if d.get("masks"):
            item = {"image": d["image"], "label": d["masks"]}
            if "mask_weights" in d:
                item["label_weights"] = d["mask_weights"]
            out.append(item)
        elif d.get("label_map") or isinstance(d.get("label"), str):
            out.append({"image": d["image"], "label": d.get("label_map") or d["label"]})
    if not out:
        raise ValueError(f"{datalist}: no radiographs with annotator masks ('masks') in keys {list(keys)} with split "
                         f"{split!r}; the bone segmentation needs them (format: {DOCS}).")
    return out


def datalist_files(datalist: str | os.PathLike) -> list[str]:
    """Every existing file a datalist refers to (images, masks, ...), sorted; the datalist itself first."""
    root = Path(datalist).parent
    found: set[str] = set()

    def walk(x) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str) and ("/" in x or "." in x):
            p = Path(x) if Path(x).is_absolute() else root / x
            if p.is_file():
                found.add(str(p))

    walk(json.loads(Path(datalist).read_text()))
    return [str(datalist), *sorted(found - {str(datalist)})]
