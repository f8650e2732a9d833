"""Helpers the vertebra_osteo bundle configs call: its cohort, its cached records, its method rows and stages.

- [0] Huang et al., TP-SwAV + MoE (``papers/vertebral_ct_tpswav_moe.txt``) §2-3; specs/wave2.md §3.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monai_osteo.bundle.vertebra_cache import build_roi_cache, patient_uid, vertebra_uid

__all__ = [
    "DEVICE_REFERENCES",
    "LEVEL_SCALE",
    "PRETRAIN_METHODS",
    "build_roi_cache",
    "method_stages",
    "model_normalisation_file",
    "normalisation",
    "patient_uid",
    "read_json_or_none",
    "resolve_vertebra_datalist",
    "save_model_normalisation",
    "vertebra_records",
    "vertebra_uid",
]

DOCS = "bundles/vertebra_osteo/docs/README.md"
#: pre-training methods -> views of ``pretrain.json``: TP-SwAV (pool members) and the crop-SwAV baseline
PRETRAIN_METHODS = {"tp_swav": "pool", "crop_swav": "crops"}
#: DXA young-adult L1-L4 references of the phantom's devices (g/cm²): the predicted T-score uses them. Real
#: devices publish their own (set ``device_references`` in the config).
DEVICE_REFERENCES = {
    "Hologic": {"index": 0, "ref_mean": 1.047, "ref_sd": 0.110},
    "GE Lunar": {"index": 1, "ref_mean": 1.130, "ref_sd": 0.120},
    "MEDIX": {"index": 2, "ref_mean": 1.140, "ref_sd": 0.120},
}
#: per-level factor of the young-adult reference (L1 < L2 < L3 ~ L4 as the phantom's DXA)
LEVEL_SCALE = {"L1": 0.94 / 1.03, "L2": 1.03 / 1.03, "L3": 1.07 / 1.03, "L4": 1.08 / 1.03}


def resolve_vertebra_datalist(dataset_dir: str | os.PathLike | None = None,
                              datalist_file: str | os.PathLike | None = None,
                              phantom_dir: str | os.PathLike | None = None, phantom_preset: str = "quick",
                              seed: int = 0, phantom_overrides: Mapping | None = None) -> str:
    """The user's datalist (``dataset_dir``/``datalist_file``, never silently replaced) or the embedded phantom
    vertebral-CT cohort of ``phantom_preset`` generated into ``phantom_dir``."""
    if dataset_dir is not None or datalist_file is not None:
        from monai_osteo.bundle.datalist import resolve_datalist

        return resolve_datalist(dataset_dir, datalist_file)
    if phantom_dir is None:
        raise ValueError("no data: set dataset_dir (a folder with datalist.json) or datalist_file, or phantom_dir "
                         f"for the embedded phantom cohort (format: {DOCS}).")
    from monai_osteo.data.phantoms.vertebra import ensure_vertebra_cohort

    return str(ensure_vertebra_cohort(Path(phantom_dir), phantom_preset, seed=seed, **dict(phantom_overrides or {})))


def _load(path: str | os.PathLike) -> dict:
    with open(path) as fh:
        return json.load(fh)


def normalisation(cache_dir: str | os.PathLike) -> dict:
    """The cache's fixed normalisation (``subtrahend``/``divisor`` per pool channel, BMD mean/std).

    Before the cache exists (a config checked without data, e.g. ``check_properties``) the identity is returned; a
    cache without its normalisation (an interrupted or older cache) is an error, never silently the identity.
    """
    path = Path(cache_dir) / "normalisation.json"
    if not path.is_file():
        if (Path(cache_dir) / "roi_datalist.json").is_file():
            raise FileNotFoundError(f"{path}: the vertebra cache has no normalisation; rebuild it (delete "
                                    f"{Path(cache_dir) / 'stage.json'} and run the 'cache' stage).")
        return {"subtrahend": [0.0] * 5, "divisor": [1.0] * 5, "bmd_mean": 0.0, "bmd_std": 1.0}
    return _load(path)


def save_model_normalisation(cache_dir: str | os.PathLike, stage_dir: str | os.PathLike) -> str:
    """Store the cache's normalisation (CT window, texture statistics, BMD mean/std) beside the fine-tuned model
    (``stage_dir/normalisation.json``): inference undoes the BMD standardisation and windows the CT with the values
    the model was trained with, wherever the model file goes."""
    from monai_osteo.io import atomic_write_json

    return str(atomic_write_json(Path(stage_dir) / "normalisation.json", normalisation(cache_dir)))


def model_normalisation_file(model_file: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str | None:
    """``normalisation.json`` beside ``model_file`` (written by the fine-tuning stage), else the cache's, else None."""
    for folder in (Path(model_file).parent, Path(cache_dir) if cache_dir is not None else None):
        if folder is not None and (folder / "normalisation.json").is_file():
            return str(folder / "normalisation.json")
    return None


def read_json_or_none(path: str | os.PathLike | None) -> dict | None:
    """The JSON content of ``path``, or None when ``path`` is None."""
    return None if path is None else _load(path)


def vertebra_records(cache_dir: str | os.PathLike, splits: Sequence[str], labelled: bool = True,
                     limit: int | None = None) -> list[dict]:
    """Records of the cached vertebrae of ``splits`` for a MONAI dataset.

    Each: ``image`` (the pool ``.npy``), ``device`` (DXA device index), ``target`` [label, standardised BMD,
    position index] (-1/NaN where absent), and the table keys ``uid``, ``patient`` (pseudonymous), ``site``,
    ``dxa_device``, ``level``, ``bmd``, ``t_score``. ``labelled`` keeps only records with a label.
    """
    cache = Path(cache_dir)
    path = cache / "roi_datalist.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the vertebra ROI cache is missing; run the bundle's 'cache' stage "
                                "(train.json runs it first) or cache.json.")
    data, norm = _load(path), normalisation(cache)
    from monai_osteo.engines.vertebra_osteo.batch import targets_of

    out = []
    for split in splits:
        for r in data.get(split, []):
            if labelled and r.get("label") is None:
                continue
            target = np.asarray(targets_of(r, norm["bmd_mean"], norm["bmd_std"]), dtype=np.float32)
            out.append({
                "image": str(cache / r["image"]), "device": _device_index(r, path), "target": target,
                "uid": r["uid"],
                "patient": r["patient"], "site": str(r.get("site", "")), "dxa_device": str(r.get("dxa_device", "")),
                "level": str(r.get("level", "")),
                "bmd": float(r["bmd"]) if r.get("bmd") is not None else math.nan,
                "t_score": float(r["t_score"]) if r.get("t_score") is not None else math.nan,
            })
    if limit is not None:
        out = out[:limit]
    if not out:
        raise ValueError(f"{path}: no {'labelled ' if labelled else ''}vertebrae in splits {list(splits)} "
                         f"(format: {DOCS}).")
    return out


def _device_index(record: Mapping, path: Path) -> int:
    """The record's DXA device index: ``device_index``, checked against ``dxa_device`` where both are given (the
    inference maps a device name to its index through ``DEVICE_REFERENCES``: the two must agree)."""
    name, index = record.get("dxa_device"), record.get("device_index")
    known = DEVICE_REFERENCES.get(str(name), {}).get("index") if name is not None else None
    if index is None:
        if known is None:
            raise ValueError(f"{path}: a vertebra has neither 'device_index' nor a known 'dxa_device' "
                             f"({sorted(DEVICE_REFERENCES)}); the MoE gate needs the DXA device (format: {DOCS}).")
        return int(known)
    if known is not None and int(index) != int(known):
        raise ValueError(f"{path}: a vertebra has dxa_device {name!r} but device_index {index} (expected {known}, as "
                         f"inference maps names to indices); fix the datalist (format: {DOCS}).")
    return int(index)


def method_stages(config_dir: str | os.PathLike, output_dir: str | os.PathLike, rows: Sequence[Mapping],
                  stage_overrides: Mapping | None = None, training_configs: Sequence[str] = (),
                  report_name: str = "report") -> list[dict]:
    """The stage list of ``train.json`` for :func:`~monai_osteo.bundle.run_stages`.

    Order: ``cache`` (ROIs + texture pools, ``cache.json``); ``pretrain_<method>`` for each pre-training some row
    uses (``pretrain.json``; ``tp_swav`` or ``crop_swav``); per row ``finetune_<row>`` (``finetune.json``) and
    ``test_<row>`` (``evaluate.json``); ``report`` (``report.json``) into ``output_dir/report_name`` (ablations that
    add rows to a run write their own report beside the main one and reuse its cache and pre-trainings).
    A row is ``{"name", "init": null | "tp_swav" | "crop_swav", "w_bmd", "w_position", "num_experts",
    "device_embedding", "embed_into_experts"}`` (missing keys: the full method's values). ``training_configs`` are
    layered on every training stage (e.g. ``multi_gpu_stage.json``).
    """
    cfg, out = Path(config_dir), Path(output_dir)
    extra = dict(stage_overrides or {})

    def stage(name: str, config: str, folder: Path, overrides: dict, workflow_type: str | None = None) -> dict:
        names = [config, *training_configs] if workflow_type == "train" else [config]
        s = {"name": name, "config_file": [str(cfg / "train.json"), *(str(cfg / n) for n in names)],
             "output_dir": str(folder), "overrides": {**overrides, **dict(extra.get(name, {}))}}
        if workflow_type:
            s["workflow_type"] = workflow_type
        return s

    names = [r.get("name") for r in rows]
    if None in names or len(set(names)) != len(names):
        raise ValueError(f"every row needs a unique 'name', got {names}.")
    stages = [stage("cache", "cache.json", out / "cache", {})]
    used = {r.get("init") for r in rows} - {None}
    unknown = used - set(PRETRAIN_METHODS)
    if unknown:
        raise ValueError(f"row init {sorted(unknown)} must be one of {sorted(PRETRAIN_METHODS)} or null (scratch).")
    for method in PRETRAIN_METHODS:
        if method in used:
            stages.append(stage(f"pretrain_{method}", "pretrain.json", out / f"pretrain_{method}",
                                {"ssl_method": method}, "train"))
    for r in rows:
        row = r["name"]
        init = r.get("init")
        over = {"row": row, "init_checkpoint": str(out / f"pretrain_{init}" / "model.pt") if init else None}
        for key in ("w_bmd", "w_position", "num_experts", "device_embedding", "embed_into_experts"):
            if key in r:
                over[key] = r[key]
        stages.append(stage(f"finetune_{row}", "finetune.json", out / row, over, "train"))
        stages.append(stage(f"test_{row}", "evaluate.json", out / row / "test", {**over, "row": row}))
    stages.append(stage("report", "report.json", out / report_name, {}))
    return stages
