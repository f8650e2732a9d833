"""Reports of the medsass bundle: the protocol table of one run (the paper's IoU beside ours, overlays) and the
summary over seeds (mean ± std, 95% CI, paired comparisons).

- [0] Singh & Cirrone, MedSASS, Tables 1 and 3 (the paper's IoU); specs/wave2.md §5.4.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monai_osteo.io import atomic_write, atomic_write_json, atomic_write_text

__all__ = ["PAPER_IOU", "QUESTIONS", "percent", "read_metric_csv", "seeds_markdown", "summarise_seeds", "write_report"]


def percent(f: float) -> str:
    """A label fraction as the percentage in row names: 0.01 -> "1", 0.1 -> "10", 1.0 -> "100"."""
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
    atomic_write_json(rep / "metrics.json", result)
    lines = [f"# MedSASS protocols on the {cohort or 'user'} cohort (test set)", "",
             f"Paper column: the paper's IoU on {paper.get('dataset', '—')} where it reports this protocol "
             "(phantom figures are not comparable in value, only in ordering).", "",
             "| row | labels | IoU | Dice | paper IoU |", "|---|---|---|---|---|"]
    for t in table:
        labels = "0%" if t["fraction"] == 0.0 else f"{percent(t['fraction'])}%"
        lines.append(f"| {t['row']} | {labels} | {_fmt(t['iou'])} | {_fmt(t['dice'])} | {_fmt(t['paper_iou'])} |")
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
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=100, format="png"))


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
