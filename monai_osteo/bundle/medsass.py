"""Helpers the medsass bundle configs call: its cohorts, its records, label fractions, protocol stages and tables.

- [0] Singh & Cirrone, MedSASS, §3-4; specs/wave2.md §5.2 (protocols), §5.7 (decisions).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monai_osteo.bundle.datalist import datalist_items

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
            rows.append({**p, "fraction": float(f), "row": f"{p['name']}@{_percent(f)}"})
    names = [r["row"] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"protocol rows must be unique, got {names}.")
    return rows


def _percent(f: float) -> str:
    p = 100.0 * float(f)
    return f"{p:g}"


def read_metric_csv(path: str | os.PathLike) -> dict[str, float]:
    """MONAI ``MetricsSaver``'s ``metrics.csv`` (``name,value`` lines; its ``delimiter``: comma or tab) as a dict."""
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.replace("\t", ",").split(",")
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def dump_json(path: str | os.PathLike, obj) -> None:
    from monai_osteo.io import atomic_write_json

    atomic_write_json(Path(path), json.loads(json.dumps(obj, default=_json_default)))


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


#: the paper's IoU for the embedded cohorts' real counterparts (Table 1: E-only ResNet-50; Table 3: E+D, Otsu)
PAPER_IOU = {
    "skin": {"dataset": "ISIC-2017", "zero_shot_ed": 0.4847, "zero_shot_e": 0.2445, "zero_shot_e_byol": 0.2412,
             "zero_shot_e_simsiam": 0.2395, "zero_shot_e_dino": 0.2426},
    "fluorescence": {"dataset": "Dermatomyositis (DAPI)", "zero_shot_ed": 0.181, "zero_shot_e": 0.1742,
                     "zero_shot_e_byol": 0.1278, "zero_shot_e_simsiam": 0.1415, "zero_shot_e_dino": 0.1399},
    "hand": {"dataset": "X-Ray (chest, lungs)", "zero_shot_ed": 0.3522, "zero_shot_e": 0.2568,
             "zero_shot_e_byol": 0.2185, "zero_shot_e_simsiam": 0.1939, "zero_shot_e_dino": 0.2052},
}


def _fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def write_report(output_dir: str | os.PathLike, rows: Sequence[Mapping], references: Sequence[str],
                 report_dir: str | os.PathLike, cohort: str | None = None) -> dict:
    """Collect every row's test metrics into ``metrics.json`` + ``metrics.md`` (the paper's IoU beside ours where
    it has one) and draw ``overlays.png`` (test images, ground truth, Otsu, zero-shot E+D, fine-tuned)."""
    out, rep = Path(output_dir), Path(report_dir)
    table = []
    for ref in references:
        table.append({"row": f"reference_{ref}", "protocol": f"reference ({ref.replace('_', '-')})", "fraction": 0.0,
                      "init": None, "transfer": None})
    table += [{"row": r["row"], "protocol": r["name"], "fraction": r["fraction"], "init": r.get("init"),
               "transfer": r.get("transfer"), "freeze_encoder": bool(r.get("freeze_encoder", False))} for r in rows]
    paper = PAPER_IOU.get(cohort or "", {})
    for t in table:
        m = out / t["row"] / "test" / "metrics.csv"
        metrics = read_metric_csv(m) if m.is_file() else {}
        t["iou"], t["dice"] = metrics.get("test_iou"), metrics.get("test_dice")
        t["paper_iou"] = paper.get(t["protocol"]) if t["fraction"] == 0.0 else None
    result = {"cohort": cohort, "paper_dataset": paper.get("dataset"), "rows": table}
    rep.mkdir(parents=True, exist_ok=True)
    dump_json(rep / "metrics.json", result)
    lines = [f"# MedSASS protocols on the {cohort or 'user'} cohort (test set)", "",
             f"Paper column: the paper's IoU on {paper.get('dataset', '—')} where it reports this protocol "
             "(phantom figures are not comparable in value, only in ordering).", "",
             "| row | labels | IoU | Dice | paper IoU |", "|---|---|---|---|---|"]
    for t in table:
        labels = "0%" if t["fraction"] == 0.0 else f"{_percent(t['fraction'])}%"
        lines.append(f"| {t['row']} | {labels} | {_fmt(t['iou'])} | {_fmt(t['dice'])} | {_fmt(t['paper_iou'])} |")
    from monai_osteo.io import atomic_write_text

    atomic_write_text(rep / "metrics.md", "\n".join(lines) + "\n")
    _overlays(out, table, rep / "overlays.png")
    return result


def _overlays(out: Path, table: Sequence[Mapping], path: Path) -> None:
    """Figure: one row per test example; columns image, ground truth (green), then the saved predictions (red) of
    the reference Otsu, zero-shot E+D and the two fine-tuned rows with the most labels (if present)."""
    wanted = ["reference_otsu", "zero_shot_ed"]
    trained = [t for t in table if t["fraction"] > 0]
    top = max((t["fraction"] for t in trained), default=None)
    wanted += [t["row"] for t in trained
               if t["fraction"] == top and t["protocol"] in ("finetune_e", "finetune_scratch")]
    examples = {}
    for row in wanted:
        f = out / row / "test" / "examples.npz"
        if f.is_file():
            with np.load(f) as z:
                examples[row] = {k: z[k] for k in z.files}
    if not examples:
        return
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    first = next(iter(examples.values()))
    n = len(first["image"])
    cols = 2 + len(examples)
    fig = Figure(figsize=(2.2 * cols, 2.2 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    truth_cmap, pred_cmap = ListedColormap(["#00c853"]), ListedColormap(["#ff1744"])
    for i in range(n):
        img = first["image"][i]
        shown = img[0] if img.shape[0] == 1 else np.clip(img.transpose(1, 2, 0), 0, 1)
        panels = [("image", None), ("ground truth", first["label"][i])]
        panels += [(row.replace("reference_", "").replace("_", " "), e["pred"][i]) for row, e in examples.items()]
        for j, (title, mask) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
            if mask is not None and mask.any():
                ax.imshow(np.ma.masked_where(~mask.astype(bool), np.ones(mask.shape)), alpha=0.4,
                          cmap=truth_cmap if j == 1 else pred_cmap, vmin=0, vmax=1)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".part.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)


def _mean_std_ci(values: Sequence[float]) -> dict:
    """Mean, sample std and the 95% Student-t confidence interval of the mean (``None`` where undefined)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None}
    if v.size == 1:
        return {"n": 1, "mean": float(v[0]), "std": None, "ci95": None}
    from scipy import stats

    mean, std = float(v.mean()), float(v.std(ddof=1))
    half = float(stats.t.ppf(0.975, v.size - 1) * std / math.sqrt(v.size))
    return {"n": int(v.size), "mean": mean, "std": std, "ci95": [mean - half, mean + half]}


#: paired comparisons the issue asks about: (question, row A, row B) — A - B per seed
QUESTIONS = [
    ("zero-label MedSASS E+D vs Otsu used directly", "zero_shot_ed", "reference_otsu"),
    ("zero-label MedSASS E+D vs all-foreground", "zero_shot_ed", "reference_all_foreground"),
    ("paper-literal E-only vs all-foreground", "zero_shot_e", "reference_all_foreground"),
]


def summarise_seeds(reports: Sequence[Mapping]) -> dict:
    """Mean ± std and 95% CI over seeds of every row's IoU and Dice, and paired per-seed differences.

    Args:
        reports: the ``report/metrics.json`` of one run per seed (same cohort and protocols).

    Returns:
        ``{"seeds": n, "rows": [{row, iou: {...}, dice: {...}}], "comparisons": [{question, a, b, diff: {...},
        wins: k of n}]}``; comparisons are :data:`QUESTIONS` plus MedSASS E and E+D fine-tuning against each SSL
        baseline and scratch at every fraction below 100% the runs share.
    """
    by_row: dict[str, dict[str, list]] = {}
    for rep in reports:
        for r in rep["rows"]:
            d = by_row.setdefault(r["row"], {"iou": [], "dice": []})
            d["iou"].append(r.get("iou"))
            d["dice"].append(r.get("dice"))
    rows = [{"row": k, "iou": _mean_std_ci(v["iou"]), "dice": _mean_std_ci(v["dice"])} for k, v in by_row.items()]
    pairs = list(QUESTIONS)
    for row in by_row:
        name, _, pct = row.partition("@")
        if name in ("finetune_e", "finetune_ed") and pct and pct != "100":
            label = "E" if name == "finetune_e" else "E+D"
            for other in ("finetune_scratch", "finetune_byol", "finetune_simsiam", "finetune_dino"):
                if f"{other}@{pct}" in by_row:
                    pairs.append((f"MedSASS {label} fine-tuned vs {other.split('_', 1)[1]} at {pct}% labels", row,
                                  f"{other}@{pct}"))
    comparisons = []
    for question, a, b in pairs:
        if a not in by_row or b not in by_row:
            continue
        diffs = [x - y for x, y in zip(by_row[a]["iou"], by_row[b]["iou"]) if x is not None and y is not None]
        comparisons.append({"question": question, "a": a, "b": b, "iou_difference": _mean_std_ci(diffs),
                            "wins": int(sum(d > 0 for d in diffs)), "seeds": len(diffs)})
    return {"seeds": len(reports), "cohort": reports[0].get("cohort") if reports else None, "rows": rows,
            "comparisons": comparisons}


def seeds_markdown(summary: Mapping) -> str:
    """Markdown tables of :func:`summarise_seeds`."""
    def cell(s: Mapping) -> str:
        if s["mean"] is None:
            return "—"
        if s["std"] is None:
            return f"{s['mean']:.3f}"
        return f"{s['mean']:.3f} ± {s['std']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"

    lines = [f"# MedSASS on the {summary.get('cohort')} cohort: {summary['seeds']} seeds (mean ± std [95% CI])", "",
             "| row | IoU | Dice |", "|---|---|---|"]
    lines += [f"| {r['row']} | {cell(r['iou'])} | {cell(r['dice'])} |" for r in summary["rows"]]
    lines += ["", "| question | IoU difference (A − B) | A better in |", "|---|---|---|"]
    lines += [f"| {c['question']} | {cell(c['iou_difference'])} | {c['wins']}/{c['seeds']} seeds |"
              for c in summary["comparisons"]]
    return "\n".join(lines) + "\n"
