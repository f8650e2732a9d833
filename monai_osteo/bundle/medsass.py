"""Helpers the medsass bundle configs call: its cohorts, its records, label fractions, protocol stages and tables.

- [0] Singh & Cirrone, MedSASS, §3-4; specs/wave2.md §5.2 (protocols), §5.7 (decisions).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monai_osteo.bundle.datalist import datalist_items
from monai_osteo.bundle.medsass_report import (
    PAPER_IOU,
    QUESTIONS,
    percent,
    read_metric_csv,
    seeds_markdown,
    summarise_seeds,
    write_report,
)

__all__ = [
    "MEDSASS_COHORTS",
    "PAPER_IOU",
    "QUESTIONS",
    "label_fraction",
    "medsass_records",
    "protocol_rows",
    "protocol_stages",
    "read_metric_csv",
    "resolve_medsass_datalist",
    "seeds_markdown",
    "summarise_seeds",
    "write_report",
]

#: embedded phantom cohorts: name -> (module, ensure function)
MEDSASS_COHORTS = {
    "skin": ("monai_osteo.data.phantoms.skin", "ensure_skin_cohort"),
    "fluorescence": ("monai_osteo.data.phantoms.fluorescence", "ensure_fluorescence_cohort"),
    "hand": ("monai_osteo.data.phantoms.cohort", "ensure_hand_cohort"),
}
DOCS = "bundles/medsass/docs/README.md"


def resolve_medsass_datalist(cohort: str, dataset_dir: str | os.PathLike | None = None,
                             datalist_file: str | os.PathLike | None = None,
                             phantom_dir: str | os.PathLike | None = None, phantom_preset: str = "quick",
                             seed: int = 0, phantom_overrides: Mapping | None = None) -> str:
    """Path of the datalist: the user's (``dataset_dir``/``datalist_file``, never silently replaced) or the
    embedded phantom cohort ``cohort`` (``"skin"``, ``"fluorescence"``, ``"hand"``) generated into ``phantom_dir``."""
    if dataset_dir is not None or datalist_file is not None:
        from monai_osteo.bundle.datalist import resolve_datalist

        return resolve_datalist(dataset_dir, datalist_file)
    if cohort not in MEDSASS_COHORTS:
        raise ValueError(f"cohort must be one of {sorted(MEDSASS_COHORTS)} (the embedded phantoms), got {cohort!r}; "
                         "for your own images set dataset_dir (with datalist.json) or datalist_file.")
    if phantom_dir is None:
        raise ValueError("phantom_dir must be set to generate the embedded cohort.")
    import importlib

    module, fn = MEDSASS_COHORTS[cohort]
    ensure = getattr(importlib.import_module(module), fn)
    return str(ensure(Path(phantom_dir), phantom_preset, seed=seed, **dict(phantom_overrides or {})))


def label_fraction(n: int, fraction: float, seed: int = 0) -> list[int]:
    """Indices of a seeded subset of ``ceil(fraction * n)`` (at least 1) of ``n`` items, nested across fractions.

    One permutation per ``seed`` is cut at different lengths, so the 1% subset is inside the 10% subset, which is
    inside the 100% set; the indices come back sorted (datalist order).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    if n < 1:
        return []
    k = min(n, max(1, math.ceil(fraction * n - 1e-9)))
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 1704])).permutation(n)
    return sorted(int(i) for i in perm[:k])


def medsass_records(datalist: str | os.PathLike, splits: Sequence[str], mask_key: str | None = "mask",
                    fraction: float = 1.0, seed: int = 0, limit: int | None = None) -> list[dict]:
    """``[{"image", "label"?}]`` of the datalist items whose ``split`` is in ``splits``.

    Args:
        datalist: decathlon-style datalist (keys ``training``, ``validation``, ``test``, ``unlabeled``; items with
            ``image``, ``split`` and a mask under ``mask_key``).
        splits: e.g. ``["training", "unlabeled"]`` (self-supervised pre-training: images only) or ``["test"]``.
        mask_key: the item key of the ground-truth mask, returned as ``label``; ``None`` returns images only
            (pre-training never reads a mask). Items without that key are an error naming them.
        fraction: keep a seeded, nested subset of this fraction (:func:`label_fraction`), per the whole list.
        seed: seed of the subset.
        limit: keep at most this many items (tiny runs).
    """
    keys = ("training", "validation", "test", "unlabeled")
    items = datalist_items(datalist, keys, list(splits))
    out = []
    for d in items:
        if mask_key is None:
            out.append({"image": d["image"]})
        elif mask_key in d:
            out.append({"image": d["image"], "label": d[mask_key]})
        else:
            raise ValueError(f"{datalist}: item {os.path.basename(str(d['image']))!r} (split {d.get('split')!r}) has "
                             f"no {mask_key!r}; the supervised protocols need a mask per image (or set mask_key; "
                             f"format: {DOCS}).")
    if fraction < 1.0:
        out = [out[i] for i in label_fraction(len(out), fraction, seed)]
    if limit is not None:
        out = out[:limit]
    if not out:
        raise ValueError(f"{datalist}: no items with split in {list(splits)}" +
                         (f" and a {mask_key!r} mask" if mask_key else "") + f" (format: {DOCS}).")
    return out


def protocol_rows(protocols: Sequence[Mapping], fractions: Sequence[float]) -> list[dict]:
    """Expand the protocol list of ``train.json`` into one row per (protocol, label fraction).

    A protocol is ``{"name", "init": "medsass"|"byol"|...|null, "transfer": "scratch"|"encoder"|"full",
    "freeze_encoder": bool, "train": bool, "fractions": [...] (optional, default ``fractions``)}``; a protocol with
    ``"train": false`` is evaluated as it is (zero-shot) and gets one row with fraction 0.
    Row names: ``<name>`` for zero-shot rows, ``<name>@<percent>`` otherwise (e.g. ``finetune_e@10``).
    """
    rows = []
    for p in protocols:
        if "name" not in p:
            raise ValueError(f"every protocol needs a 'name', got {dict(p)!r}.")
        if not p.get("train", True):
            rows.append({**p, "fraction": 0.0, "row": p["name"]})
            continue
        for f in p.get("fractions", fractions):
            rows.append({**p, "fraction": float(f), "row": f"{p['name']}@{percent(f)}"})
    names = [r["row"] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"protocol rows must be unique, got {names}.")
    return rows


def protocol_stages(config_dir: str | os.PathLike, output_dir: str | os.PathLike, rows: Sequence[Mapping],
                    ssl_baselines: Sequence[str] = (), references: Sequence[str] = ("all_foreground", "otsu"),
                    stage_overrides: Mapping | None = None, training_configs: Sequence[str] = ()) -> list[dict]:
    """The stage list of ``train.json`` for :func:`~monai_osteo.bundle.run_stages`.

    Order: ``pretrain`` (MedSASS, ``pretrain.json``); ``pretrain_<method>`` for each SSL baseline some row uses
    (``pretrain_ssl.json``); per row: its training (``finetune.json``, unless zero-shot) and its test evaluation
    (``evaluate.json``); one evaluation per reference (``reference_<name>``); the ``report`` (``report.json``).
    Every stage config is layered on ``train.json``; ``stage_overrides`` maps a stage name to extra overrides;
    ``training_configs`` (names in ``config_dir`` or paths) are layered last on every training stage (e.g.
    ``multi_gpu_stage.json``: DistributedDataParallel and a DistributedSampler).
    """
    cfg, out = Path(config_dir), Path(output_dir)
    extra = dict(stage_overrides or {})

    def files(*names: str) -> list[str]:
        return [str(cfg / "train.json"), *(str(cfg / n) for n in names)]

    def stage(name: str, config: str, folder: Path, overrides: dict, workflow_type: str | None = None) -> dict:
        names = [config, *training_configs] if workflow_type == "train" else [config]
        s = {"name": name, "config_file": files(*names), "output_dir": str(folder),
             "overrides": {**overrides, **dict(extra.get(name, {}))}}
        if workflow_type:
            s["workflow_type"] = workflow_type
        return s

    used = {r.get("init") for r in rows} - {None}
    unknown = used - {"medsass", *ssl_baselines}
    if unknown:
        raise ValueError(f"protocol init {sorted(unknown)} is neither 'medsass' nor in ssl_baselines "
                         f"{list(ssl_baselines)}: add it to ssl_baselines or fix the protocol.")
    stages = []
    if "medsass" in used:
        stages.append(stage("pretrain", "pretrain.json", out / "pretrain", {}, "train"))
    for method in ssl_baselines:
        if method in used:
            stages.append(stage(f"pretrain_{method}", "pretrain_ssl.json", out / f"pretrain_{method}",
                                {"ssl_method": method}, "train"))

    def init_file(init: str | None) -> str | None:
        if init is None:
            return None
        return str(out / ("pretrain" if init == "medsass" else f"pretrain_{init}") / "model.pt")

    for r in rows:
        row, transfer = r["row"], r.get("transfer", "scratch")
        if transfer != "scratch" and r.get("init") is None:
            raise ValueError(f"protocol {r['name']!r}: transfer {transfer!r} needs an 'init' (medsass or a baseline).")
        if r.get("train", True):
            stages.append(stage(row, "finetune.json", out / row,
                                {"row": row, "transfer": transfer, "init_checkpoint": init_file(r.get("init")),
                                 "freeze_encoder": bool(r.get("freeze_encoder", False)),
                                 "label_fraction": r["fraction"]}, "train"))
            ev = {"row": row, "eval_model": "unet", "transfer": "full", "init_checkpoint": str(out / row / "model.pt")}
        else:
            ev = {"row": row, "eval_model": "unet", "transfer": transfer, "init_checkpoint": init_file(r.get("init"))}
        stages.append(stage(f"test_{row}", "evaluate.json", out / row / "test", ev))
    for ref in references:
        if ref not in ("all_foreground", "otsu"):
            raise ValueError(f"references must be among ('all_foreground', 'otsu'), got {ref!r}.")
        row = f"reference_{ref}"
        stages.append(stage(f"test_{row}", "evaluate.json", out / row / "test",
                            {"row": row, "eval_model": ref, "transfer": "scratch", "init_checkpoint": None}))
    stages.append(stage("report", "report.json", out / "report", {}))
    return stages
