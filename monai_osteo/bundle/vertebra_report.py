"""Tables of the vertebra_osteo bundle: per-site vertebra/patient metrics of every method row beside the paper's,
paired comparisons with the base row, BMD agreement, ROC figure; and the summary over seeds.

- [0] Huang et al., TP-SwAV + MoE (``papers/vertebral_ct_tpswav_moe.txt``) Tables 2-4, Fig. 3; specs/wave2.md
  §3.8-3.9 (the paper's numbers and the orderings a re-implementation should reproduce).
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monai_osteo.io import atomic_write_json, atomic_write_text

__all__ = ["ORDERINGS", "PAPER_F1", "read_predictions", "seeds_markdown", "summarise_seeds", "write_report"]

#: the paper's F1 (%) per site A-D and level for the rows this bundle runs (Tables 2-3; "—" lost in the text).
#: Row names of the bundle -> (vertebra F1 A, B, C, D), (patient F1 A, B, C, D).
PAPER_F1 = {
    "scratch": ((80.49, 59.80, 65.04, 70.54), (81.43, 78.85, 71.43, 77.47)),
    "swav": ((78.84, 57.75, 62.90, 75.34), (80.62, 77.66, 74.07, 76.91)),
    "tp_swav": ((79.97, 60.10, 69.42, 73.97), (82.65, 79.74, 74.27, 78.30)),
    "tp_swav_unified": ((80.38, 65.05, 72.24, 76.27), (82.75, 80.30, 77.78, 79.77)),
    "tp_swav_unified_moe": ((82.98, 67.63, None, None), (86.33, 82.81, 78.57, 83.62)),
    "scratch_class": ((80.49, 59.80, 65.04, 70.54), None),
    "scratch_bmd": ((80.87, 60.64, 68.47, 70.74), None),
    "scratch_position": ((80.54, 61.49, 65.62, 71.52), None),
    "scratch_unified": ((81.18, 61.70, 70.97, 72.18), None),
}
#: orderings of specs/wave2.md §3.9: (name, better row, worse row, level)
ORDERINGS = [
    ("O2 TP-SwAV > crop-SwAV (L_class)", "tp_swav", "swav", "vertebra"),
    ("O2 TP-SwAV > crop-SwAV (L_class), patients", "tp_swav", "swav", "patient"),
    ("O3 L_unified > L_class (TP-SwAV)", "tp_swav_unified", "tp_swav", "vertebra"),
    ("O4 MoE > single head (TP-SwAV, L_unified)", "tp_swav_unified_moe", "tp_swav_unified", "vertebra"),
    ("O4 MoE > single head, patients", "tp_swav_unified_moe", "tp_swav_unified", "patient"),
    ("TP-SwAV > scratch (L_class; on the mean only, as the paper)", "tp_swav", "scratch", "vertebra"),
    ("O5 chain, patients: TP-SwAV > crop-SwAV", "tp_swav", "swav", "patient"),
    ("O5 chain, patients: +L_unified > TP-SwAV", "tp_swav_unified", "tp_swav", "patient"),
    ("O5 chain, patients: +MoE > +L_unified", "tp_swav_unified_moe", "tp_swav_unified", "patient"),
    ("O1 L_class+L_BMD >= L_class (scratch)", "scratch_bmd", "scratch_class", "vertebra"),
    ("O1 L_class+L_position >= L_class (scratch)", "scratch_position", "scratch_class", "vertebra"),
    ("O1 L_unified > L_class (scratch)", "scratch_unified", "scratch_class", "vertebra"),
    ("O1 L_unified > L_class+L_BMD (scratch)", "scratch_unified", "scratch_bmd", "vertebra"),
    ("MoE > single head (moe ablation)", "moe", "single_head", "vertebra"),
    ("MoE > single head (moe ablation), patients", "moe", "single_head", "patient"),
    ("MoE > MoE without device embedding", "moe", "moe_no_device_embedding", "vertebra"),
    ("MoE > device embedding without MoE", "moe", "device_embedding_no_moe", "vertebra"),
]
SITES = ("A", "B", "C", "D")


def read_predictions(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``predictions.csv`` with numbers parsed."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k, v in r.items():
            if k in ("uid", "patient", "site", "dxa_device", "level"):
                continue
            try:
                r[k] = float(v)
            except (TypeError, ValueError):
                pass
    return rows


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _mean_site_f1(metrics: Mapping, level: str, sites: Sequence[str]) -> float:
    values = [metrics[level][s]["f1"] for s in sites if s in metrics.get(level, {})]
    return float(np.mean(values)) if values else float("nan")


def write_report(output_dir: str | os.PathLike, rows: Sequence[Mapping], report_dir: str | os.PathLike,
                 base_row: str | None = "tp_swav_unified_moe", sites_order: Sequence[str] = SITES,
                 threshold: float = 0.5) -> dict:
    """Collect every row's ``test/metrics.json`` + ``predictions.csv`` into ``report_dir``: ``metrics.json``,
    ``results.md`` (tables with the paper's F1 beside ours) and ``roc.png`` (vertebra level, pooled; Fig. 3)."""
    from monai_osteo.metrics import aggregate_patients, paired_tests
    from monai_osteo.report.figures import save_roc_png

    out, report = Path(output_dir), Path(report_dir)
    table: dict[str, dict] = {}
    preds: dict[str, list[dict]] = {}
    for r in rows:
        name = r["name"]
        folder = out / name / "test"
        if not (folder / "metrics.json").is_file():
            raise FileNotFoundError(f"{folder / 'metrics.json'}: row {name!r} has no test results; run its test stage.")
        table[name] = json.loads((folder / "metrics.json").read_text())
        preds[name] = [p for p in read_predictions(folder / "predictions.csv") if p["label"] >= 0]
        table[name]["mean_site_f1"] = {lvl: _mean_site_f1(table[name], lvl, sites_order)
                                       for lvl in ("vertebra", "patient")}
    paired = {}
    if base_row in preds:
        base = {p["uid"]: p for p in preds[base_row]}
        for name, items in preds.items():
            if name == base_row:
                continue
            common = [p for p in items if p["uid"] in base]
            ca = [int(base[p["uid"]]["pred"] == base[p["uid"]]["label"]) for p in common]
            cb = [int(p["pred"] == p["label"]) for p in common]
            paired[name] = paired_tests(ca, cb) if common else {}
            pa = aggregate_patients([{"patient_id": base[p["uid"]]["patient"], "label": int(p["label"]),
                                      "prob": base[p["uid"]]["prob"]} for p in common], threshold=threshold)
            pb = aggregate_patients([{"patient_id": p["patient"], "label": int(p["label"]), "prob": p["prob"]}
                                     for p in common], threshold=threshold)
            paired[name + "@patient"] = paired_tests([int(a["pred"] == a["label"]) for a in pa],
                                                     [int(b["pred"] == b["label"]) for b in pb]) if pa else {}
    orderings = []
    for title, better, worse, level in ORDERINGS:
        if better in table and worse in table:
            a, b = table[better]["mean_site_f1"][level], table[worse]["mean_site_f1"][level]
            orderings.append({"ordering": title, "better": better, "worse": worse, "level": level,
                              "better_f1": a, "worse_f1": b, "holds": bool(a > b) if not title.startswith("O1 L_class+")
                              else bool(a >= b)})
    summary = {"rows": table, "paired_vs_base": paired, "base_row": base_row, "orderings": orderings}
    report.mkdir(parents=True, exist_ok=True)
    atomic_write_json(report / "metrics.json", summary)
    atomic_write_text(report / "results.md", _markdown(summary, sites_order))
    save_roc_png(report / "roc.png", {n: ([int(p["label"]) for p in v], [p["prob"] for p in v])
                                      for n, v in preds.items()}, title="Vertebra level, pooled test sites")
    return summary


def _markdown(summary: Mapping, sites: Sequence[str]) -> str:
    lines = ["# vertebra_osteo results", "",
             "F1 (%) of the positive class per site; `paper` = the paper's Tables 2-3 (real CT, other numbers of "
             "vertebrae; compare orderings, not values). Mean = mean over the sites present.", ""]
    for level in ("vertebra", "patient"):
        lines += [f"## {level.capitalize()} level", "",
                  "| row | " + " | ".join(f"{s} ACC / SEN / SPE / F1 / AUC" for s in sites) + " | mean F1 | paper F1 "
                  + " / ".join(sites) + " |",
                  "|---|" + "---|" * (len(sites) + 2)]
        for name, m in summary["rows"].items():
            cells = []
            for s in sites:
                x = m.get(level, {}).get(s)
                cells.append("—" if x is None else " / ".join(_pct(x[k]) for k in
                                                              ("accuracy", "sensitivity", "specificity", "f1", "auc")))
            paper = PAPER_F1.get(name)
            ref = paper[0 if level == "vertebra" else 1] if paper else None
            ref_txt = " / ".join("—" if v is None else f"{v:.1f}" for v in ref) if ref else "—"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {_pct(m['mean_site_f1'][level])} | {ref_txt} |")
        lines.append("")
    lines += ["## Paired comparisons with the base row (" + str(summary.get("base_row")) + ")", "",
              "Per-vertebra (and per-patient) correctness at threshold 0.5; paired t-test as the paper, exact McNemar.",
              "", "| row | n | acc base | acc row | t-test p | McNemar p |", "|---|---|---|---|---|---|"]
    for name, t in summary["paired_vs_base"].items():
        if t:
            lines.append(f"| {name} | {t['n']} | {_pct(t['acc_a'])} | {_pct(t['acc_b'])} | {t['t_pvalue']:.3g} | "
                         f"{t['mcnemar_pvalue']:.3g} |")
    lines += ["", "## BMD regression (g/cm²) and position", "", "| row | MAE pooled | r pooled | per device MAE / r | "
              "position accuracy |", "|---|---|---|---|---|"]
    for name, m in summary["rows"].items():
        b = m.get("bmd", {})
        dev = "; ".join(f"{k}: {v['mae']:.3f} / {v['pearson_r']:.2f}" for k, v in b.items() if k != "pooled")
        pooled = b.get("pooled", {})
        lines.append(f"| {name} | {pooled.get('mae', float('nan')):.3f} | {pooled.get('pearson_r', float('nan')):.2f} "
                     f"| {dev} | {_pct(m.get('position_accuracy'))} |")
    lines += ["", "## Orderings of the paper (specs/wave2.md §3.9), mean F1 over sites", "",
              "| ordering | level | better | worse | holds |", "|---|---|---|---|---|"]
    for o in summary["orderings"]:
        lines.append(f"| {o['ordering']} | {o['level']} | {_pct(o['better_f1'])} | {_pct(o['worse_f1'])} | "
                     f"{'yes' if o['holds'] else 'no'} |")
    return "\n".join(lines) + "\n"


def summarise_seeds(reports: Sequence[Mapping]) -> dict:
    """Mean ± std over seeds of every row's mean-site F1 and pooled AUC per level, and how often each ordering held
    (a paired t-test over seeds of the two rows' mean-site F1 where there are >= 3 seeds)."""
    from scipy.stats import ttest_rel

    rows: dict[str, dict] = {}
    for rep in reports:
        for name, m in rep["rows"].items():
            r = rows.setdefault(name, {})
            for level in ("vertebra", "patient"):
                r.setdefault(f"{level}_f1", []).append(m["mean_site_f1"][level])
                r.setdefault(f"{level}_auc", []).append(m[level]["pooled"]["auc"])
                r.setdefault(f"{level}_f1_pooled", []).append(m[level]["pooled"]["f1"])
                for s in SITES:
                    if s in m.get(level, {}):
                        r.setdefault(f"{level}_f1_{s}", []).append(m[level][s]["f1"])
            r.setdefault("bmd_mae", []).append(m.get("bmd", {}).get("pooled", {}).get("mae", float("nan")))
            r.setdefault("position_accuracy", []).append(m.get("position_accuracy", float("nan")))
    with warnings.catch_warnings():  # all-NaN entries (a metric a row does not have) stay NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = {name: {k: {"mean": float(np.nanmean(v)),
                            "std": float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0,
                            "values": [float(x) for x in v]} for k, v in r.items()} for name, r in rows.items()}
    orderings = []
    for title, better, worse, level in ORDERINGS:
        if better in rows and worse in rows:
            entry = {"ordering": title, "level": level, "better": better, "worse": worse}
            for metric in ("f1", "f1_pooled", "auc"):
                a, b = rows[better][f"{level}_{metric}"], rows[worse][f"{level}_{metric}"]
                diff = np.subtract(a, b)
                p = float(ttest_rel(a, b).pvalue) if len(a) >= 3 and np.ptp(diff) > 0 else float("nan")
                entry[metric] = {"held_in": int(sum(x > y for x, y in zip(a, b))), "seeds": len(a),
                                 "mean_diff": float(np.mean(np.subtract(a, b))), "t_pvalue": p}
            orderings.append(entry)
    return {"seeds": len(reports), "rows": stats, "orderings": orderings}


def seeds_markdown(summary: Mapping) -> str:
    """Markdown of :func:`summarise_seeds`."""
    n = summary["seeds"]
    lines = [f"# vertebra_osteo over {n} seeds (mean ± std)", "",
             "| row | vertebra F1 (mean of sites) | patient F1 (mean of sites) | vertebra F1 / AUC (pooled) | "
             "patient F1 / AUC (pooled) | " + " | ".join(f"vertebra F1 {s}" for s in SITES) + " | BMD MAE g/cm² | "
             "position acc |",
             "|---|---|---|---|---|" + "---|" * len(SITES) + "---|---|"]

    def ms(d: Mapping | None, pct: bool = True) -> str:
        if not d:
            return "—"
        f = 100.0 if pct else 1.0
        return f"{f * d['mean']:.1f} ± {f * d['std']:.1f}" if pct else f"{d['mean']:.3f} ± {d['std']:.3f}"

    for name, r in summary["rows"].items():
        lines.append(f"| {name} | {ms(r.get('vertebra_f1'))} | {ms(r.get('patient_f1'))} | "
                     f"{ms(r.get('vertebra_f1_pooled'))} / {ms(r.get('vertebra_auc'))} | "
                     f"{ms(r.get('patient_f1_pooled'))} / {ms(r.get('patient_auc'))} | "
                     + " | ".join(ms(r.get(f'vertebra_f1_{s}')) for s in SITES)
                     + f" | {ms(r.get('bmd_mae'), False)} | {ms(r.get('position_accuracy'))} |")
    lines += ["", "Orderings: seeds where it held, mean difference (points) and the paired t-test over seeds (p), on "
              "the mean of the per-site F1 (the paper's reading), the pooled F1 and the pooled AUC.", "",
              "| ordering | level | mean-site F1 | pooled F1 | pooled AUC |", "|---|---|---|---|---|"]

    def cell(o: Mapping) -> str:
        return f"{o['held_in']}/{o['seeds']}, {100 * o['mean_diff']:+.1f} (p {o['t_pvalue']:.2g})"

    for o in summary["orderings"]:
        lines.append(f"| {o['ordering']} | {o['level']} | {cell(o['f1'])} | {cell(o['f1_pooled'])} | "
                     f"{cell(o['auc'])} |")
    return "\n".join(lines) + "\n"
