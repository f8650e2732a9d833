"""Reports of the s4mi bundle: one run's classification and segmentation tables (the paper's numbers beside ours),
the IoU-vs-label-fraction figure (the paper's Fig. 5), and the summary over seeds with the paper's claims.

- [0] Singh et al., 2024, S4MI: Table 1 (classification), Fig. 5 (segmentation, bars only); specs/wave2.md §4.2-4.3.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai_osteo.bundle.medsass_report import _mean_std_ci, percent, read_metric_csv
from monai_osteo.io import atomic_write, atomic_write_json, atomic_write_text

__all__ = ["PAPER_TABLE1", "constant_prior_metrics", "iou_figure", "s4mi_claims", "s4mi_seeds_markdown",
           "summarise_s4mi_seeds", "write_report"]

#: Table 1 of the paper for the real counterparts of the embedded cohorts (skin -> ISIC-2017 recall; fluorescence ->
#: Dermatomyositis F1), keyed by (method, backbone, percent); "supervised" is the paper's ImageNet transfer
PAPER_TABLE1 = {
    "skin": {"dataset": "ISIC-2017", "metric": "recall", "values": {
        ("dino", "cnn", "10"): 0.322, ("dino", "cnn", "100"): 0.6407, ("cass", "cnn", "10"): 0.343,
        ("cass", "cnn", "100"): 0.599, ("supervised", "cnn", "10"): 0.288, ("supervised", "cnn", "100"): 0.5774,
        ("dino", "vit", "10"): 0.291, ("dino", "vit", "100"): 0.5571, ("cass", "vit", "10"): 0.321,
        ("cass", "vit", "100"): 0.588, ("supervised", "vit", "10"): 0.277, ("supervised", "vit", "100"): 0.5322}},
    "fluorescence": {"dataset": "Dermatomyositis", "metric": "f1", "values": {
        ("dino", "cnn", "10"): 0.8237, ("dino", "cnn", "100"): 0.84252, ("cass", "cnn", "10"): 0.8158,
        ("cass", "cnn", "100"): 0.8650, ("supervised", "cnn", "10"): 0.819, ("supervised", "cnn", "100"): 0.83895,
        ("dino", "vit", "10"): 0.8445, ("dino", "vit", "100"): 0.8639, ("cass", "vit", "10"): 0.8717,
        ("cass", "vit", "100"): 0.8894, ("supervised", "vit", "10"): 0.8356, ("supervised", "vit", "100"): 0.8420}},
}
BACKBONE_NAMES = {"cnn": "CNN", "vit": "ViT"}


def _fmt(x, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _metrics(path: Path) -> dict[str, float]:
    return read_metric_csv(path) if path.is_file() else {}


def _seg_nets(method: str) -> list[str]:
    return ["unet", "swin"] if method == "cross_teaching" else [method.split("_", 1)[1]]


def constant_prior_metrics(datalist: str | os.PathLike, num_classes: int, multilabel: bool,
                           threshold: float = 0.5) -> dict[str, float]:
    """Test metrics of the constant classifier that outputs each class's training prevalence as its probability:
    the floor every row must beat (with imbalanced classes it scores a high micro F1 / recall by predicting the
    majority class, or the frequent labels, for every image)."""
    import torch

    from monai_osteo.bundle.s4mi import classification_records
    from monai_osteo.metrics.s4mi import balanced_accuracy, macro_f1_argmax, micro_f1, micro_recall

    train = torch.tensor([r["label"] for r in classification_records(datalist, ["training"], num_classes, multilabel)])
    test = torch.tensor([r["label"] for r in classification_records(datalist, ["test"], num_classes, multilabel)])
    prior = train.mean(0, keepdim=True).expand_as(test)
    out = {"f1": micro_f1(prior, test, threshold), "recall": micro_recall(prior, test, threshold),
           "macro_f1": None, "balanced_accuracy": None}
    if not multilabel:
        out.update(macro_f1=macro_f1_argmax(prior, test), balanced_accuracy=balanced_accuracy(prior, test))
    return out


def write_report(output_dir: str | os.PathLike, workflows: Sequence[str], cls_rows: Sequence[Mapping],
                 seg_rows: Sequence[Mapping], report_dir: str | os.PathLike, cohort: str | None = None,
                 datalist: str | os.PathLike | None = None, num_classes: int | None = None,
                 multilabel: bool = False, threshold: float = 0.5) -> dict:
    """Collect the test metrics of every row into ``metrics.json`` + ``metrics.md`` and draw
    ``segmentation_iou.png`` (test IoU vs label fraction per method and network); with ``datalist`` and
    ``num_classes``, the constant training-prevalence classifier is reported as the classification floor."""
    out, rep = Path(output_dir), Path(report_dir)
    paper = PAPER_TABLE1.get(cohort or "", {})
    result: dict = {"cohort": cohort, "paper_dataset": paper.get("dataset"), "paper_metric": paper.get("metric"),
                    "classification": [], "segmentation": [], "classification_floor": None}
    if "classification" in workflows:
        if datalist is not None and num_classes is not None:
            result["classification_floor"] = constant_prior_metrics(datalist, num_classes, multilabel, threshold)
        for r in cls_rows:
            m = _metrics(out / "classification" / r["row"] / "test" / "metrics.csv")
            result["classification"].append({
                "row": r["row"], "method": r["method"], "backbone": r["backbone"], "fraction": r["fraction"],
                "f1": m.get("test_f1"), "recall": m.get("test_recall"), "macro_f1": m.get("test_macro_f1"),
                "balanced_accuracy": m.get("test_balanced_accuracy"),
                "paper": paper.get("values", {}).get((r["method"], r["backbone"], percent(r["fraction"])))})
    if "segmentation" in workflows:
        for r in seg_rows:
            for net in _seg_nets(r["method"]):
                m = _metrics(out / "segmentation" / r["row"] / f"test_{net}" / "metrics.csv")
                result["segmentation"].append({"row": r["row"], "method": r["method"], "net": net,
                                               "fraction": r["fraction"], "iou": m.get("test_iou"),
                                               "dice": m.get("test_dice")})
    rep.mkdir(parents=True, exist_ok=True)
    atomic_write_json(rep / "metrics.json", result)
    atomic_write_text(rep / "metrics.md", report_markdown(result))
    if result["segmentation"]:
        iou_figure(result["segmentation"], rep / "segmentation_iou.png", cohort)
    return result


def report_markdown(result: Mapping) -> str:
    """Markdown tables of one run's :func:`write_report` result."""
    lines = [f"# S4MI on the {result.get('cohort') or 'user'} cohort (test set)", ""]
    if result["classification"]:
        metric = result.get("paper_metric")
        lines += [f"Classification. F1/recall: CASS-literal micro counts over (image, class) pairs, sigmoid > 0.5; "
                  f"paper column: Table 1 {metric} on {result.get('paper_dataset') or '—'} (ImageNet transfer for "
                  "'supervised'; ours is from scratch) — comparable in ordering only.", "",
                  "| method | backbone | labels | micro F1 | micro recall | macro F1 | balanced acc. | paper |",
                  "|---|---|---|---|---|---|---|---|"]
        floor = result.get("classification_floor")
        if floor:
            lines.append(f"| constant (training prevalence) | — | — | {_fmt(floor['f1'])} | {_fmt(floor['recall'])} | "
                         f"{_fmt(floor['macro_f1'])} | {_fmt(floor['balanced_accuracy'])} | — |")
        for t in result["classification"]:
            lines.append(f"| {t['method']} | {BACKBONE_NAMES[t['backbone']]} | {percent(t['fraction'])}% | "
                         f"{_fmt(t['f1'])} | {_fmt(t['recall'])} | {_fmt(t['macro_f1'])} | "
                         f"{_fmt(t['balanced_accuracy'])} | {_fmt(t['paper'])} |")
        lines.append("")
    if result["segmentation"]:
        lines += ["Segmentation (foreground IoU and Dice; images with an empty mask are skipped). The paper gives "
                  "Fig. 5 bars only, no numbers.", "", "| method | network | labels | IoU | Dice |",
                  "|---|---|---|---|---|"]
        for t in result["segmentation"]:
            lines.append(f"| {t['method']} | {t['net']} | {percent(t['fraction'])}% | {_fmt(t['iou'])} | "
                         f"{_fmt(t['dice'])} |")
    return "\n".join(lines) + "\n"


def iou_figure(rows: Sequence[Mapping], path: Path, cohort: str | None, errors: Mapping | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    series: dict[str, list] = {}
    for r in rows:
        if r.get("iou") is not None:
            series.setdefault(f"{r['method']} ({r['net']})", []).append((100 * r["fraction"], r["iou"],
                                                                         (errors or {}).get((r["row"], r["net"]))))
    for name, pts in sorted(series.items()):
        pts.sort()
        xs, ys, es = zip(*pts)
        style = "-o" if name.startswith("cross_teaching") else "--s"
        if any(e is not None for e in es):
            ax.errorbar(xs, ys, yerr=[e or 0.0 for e in es], fmt=style, capsize=3, label=name)
        else:
            ax.plot(xs, ys, style, label=name)
    ax.set_xlabel("labelled training images (%)")
    ax.set_ylabel("test IoU (foreground)")
    ax.set_title(f"S4MI segmentation vs label fraction ({cohort or 'user'} cohort)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=110, format="png"))
    plt.close(fig)


def summarise_s4mi_seeds(reports: Sequence[Mapping]) -> dict:
    """Mean ± std and 95 % CI over seeds of every classification and segmentation cell, and the paper's claims
    (:func:`s4mi_claims`) with the per-seed differences they rest on."""
    cls: dict[tuple, dict] = {}
    seg: dict[tuple, dict] = {}
    for rep in reports:
        for r in rep.get("classification", []):
            d = cls.setdefault((r["method"], r["backbone"], r["fraction"]),
                               {"f1": [], "recall": [], "macro_f1": [], "balanced_accuracy": [],
                                "paper": r.get("paper")})
            for k in ("f1", "recall", "macro_f1", "balanced_accuracy"):
                d[k].append(r.get(k))
        for r in rep.get("segmentation", []):
            seg.setdefault((r["method"], r["net"], r["fraction"]), {"iou": [], "dice": [], "row": r["row"]})
            seg[(r["method"], r["net"], r["fraction"])]["iou"].append(r.get("iou"))
            seg[(r["method"], r["net"], r["fraction"])]["dice"].append(r.get("dice"))
    summary = {
        "seeds": len(reports), "cohort": reports[0].get("cohort") if reports else None,
        "paper_metric": reports[0].get("paper_metric") if reports else None,
        "classification": [{"method": k[0], "backbone": k[1], "fraction": k[2], "paper": v["paper"],
                            **{m: _mean_std_ci(v[m]) for m in ("f1", "recall", "macro_f1", "balanced_accuracy")},
                            "values": v}
                           for k, v in cls.items()],
        "segmentation": [{"method": k[0], "net": k[1], "fraction": k[2], "row": v["row"],
                          "iou": _mean_std_ci(v["iou"]), "dice": _mean_std_ci(v["dice"]), "values": v}
                         for k, v in seg.items()],
    }
    floors = [rep.get("classification_floor") for rep in reports if rep.get("classification_floor")]
    summary["classification_floor"] = {m: _mean_std_ci([f[m] for f in floors])
                                       for m in ("f1", "recall", "macro_f1", "balanced_accuracy")} if floors else None
    summary["claims"] = s4mi_claims(summary)
    return summary


def _paired(a: Sequence, b: Sequence) -> dict:
    diffs = [x - y for x, y in zip(a, b) if x is not None and y is not None]
    return {"difference": _mean_std_ci(diffs), "wins": int(sum(d > 0 for d in diffs)), "seeds": len(diffs)}


def s4mi_claims(summary: Mapping) -> list[dict]:
    """The paper's orderings (specs/wave2.md §4.2 C1-C3, §4.3 S1-S3) tested on per-seed paired differences.

    A claim ``holds`` when the mean difference is > 0 and A is better on every seed (with >= 2 seeds), is a ``tie``
    when A and B are equal on every seed, ``fails`` when the mean difference is <= 0, and is ``unclear`` otherwise.
    Classification claims use the cohort's paper metric (recall for the ISIC-like skin cohort, micro F1 otherwise)
    and, for multi-class data, balanced accuracy; segmentation claims compare a cross-teaching network with the same
    network trained supervised (and with the ResNet-34 U-Net, the paper's DEDL comparator, when it was run).
    """
    paper_key = "recall" if summary.get("paper_metric") == "recall" else "f1"
    keys = [paper_key]
    if any(v is not None for c in summary["classification"] for v in c["values"].get("balanced_accuracy", [])):
        keys.append("balanced_accuracy")  # multi-class: the micro metrics reward predicting the majority class
    names = {"recall": "micro recall", "f1": "micro F1", "balanced_accuracy": "balanced acc."}
    claims: list[tuple[str, Sequence, Sequence]] = []
    for key in keys:
        cls = {(c["method"], c["backbone"], c["fraction"]): c["values"][key] for c in summary["classification"]}
        for b in ("cnn", "vit"):
            for f in sorted({k[2] for k in cls}):
                for m in ("cass", "dino"):
                    if (m, b, f) in cls and ("supervised", b, f) in cls:
                        claims.append((f"C1: {m.upper()} > from scratch, {BACKBONE_NAMES[b]}, {percent(f)}% labels "
                                       f"({names[key]})", cls[(m, b, f)], cls[("supervised", b, f)]))
                if ("cass", b, f) in cls and ("dino", b, f) in cls:
                    claims.append((f"C2: CASS > DINO, {BACKBONE_NAMES[b]}, {percent(f)}% labels ({names[key]})",
                                   cls[("cass", b, f)], cls[("dino", b, f)]))
            fr = sorted({k[2] for k in cls if k[1] == b})
            for m in ("cass", "dino"):
                if len(fr) >= 2 and all((x, b, f) in cls for x in (m, "supervised") for f in (fr[0], fr[-1])):
                    gain = [[a - c if a is not None and c is not None else None
                             for a, c in zip(cls[(m, b, f)], cls[("supervised", b, f)])] for f in (fr[0], fr[-1])]
                    claims.append((f"C3: {m.upper()} gains more over from scratch at {percent(fr[0])}% than at "
                                   f"{percent(fr[-1])}% labels, {BACKBONE_NAMES[b]} ({names[key]})", gain[0], gain[1]))
    seg = {(s["method"], s["net"], s["fraction"]): s["values"]["iou"] for s in summary["segmentation"]}
    def comparable(net: str, sup: str) -> bool:  # the same network, or the paper's comparator (DEDL ~ ResNet-34)
        return sup == f"supervised_{net}" or sup == "supervised_resnet34"

    ct = sorted(k for k in seg if k[0] == "cross_teaching")
    sup_keys = [k for k in seg if k[0].startswith("supervised")]
    for (m, net, f) in ct:
        for (sm, snet, sf) in sup_keys:
            if sf == f and comparable(net, sm):
                claims.append((f"S1: cross-teaching {net} > {sm} at {percent(f)}% labels", seg[(m, net, f)],
                               seg[(sm, snet, sf)]))
            if f in (0.3, 0.5) and sf == 1.0 and comparable(net, sm):
                claims.append((f"S2: cross-teaching {net} at {percent(f)}% > {sm} at 100%", seg[(m, net, f)],
                               seg[(sm, snet, sf)]))
    for net in sorted({k[1] for k in ct}):
        fr = sorted(f for (_, n, f) in ct if n == net and f < 1.0 and (f"supervised_{net}", net, f) in seg)
        if len(fr) >= 2:
            lo, hi = fr[0], fr[-1]
            gain = [[a - b if a is not None and b is not None else None for a, b in
                     zip(seg[("cross_teaching", net, f)], seg[(f"supervised_{net}", net, f)])] for f in (lo, hi)]
            claims.append((f"S3: cross-teaching {net} gains more over supervised_{net} at {percent(lo)}% than at "
                           f"{percent(hi)}%", gain[0], gain[1]))
    out = []
    for text, a, b in claims:
        p = _paired(a, b)
        mean = p["difference"]["mean"]
        diffs = [x - y for x, y in zip(a, b) if x is not None and y is not None]
        if mean is None:
            verdict = "unclear"
        elif diffs and all(abs(d) < 1e-12 for d in diffs):
            verdict = "tie"  # e.g. both rows predict the majority class on every seed
        elif mean <= 0:
            verdict = "fails"
        else:
            verdict = "holds" if p["seeds"] >= 2 and p["wins"] == p["seeds"] else "unclear"
        out.append({"claim": text, **p, "verdict": verdict})
    return out


def s4mi_seeds_markdown(summary: Mapping) -> str:
    """Markdown of :func:`summarise_s4mi_seeds`."""
    def cell(s: Mapping) -> str:
        if s["mean"] is None:
            return "—"
        return f"{s['mean']:.3f}" if s["std"] is None else f"{s['mean']:.3f} ± {s['std']:.3f}"

    lines = [f"# S4MI on the {summary.get('cohort')} cohort: {summary['seeds']} seeds (mean ± std)", ""]
    if summary["classification"]:
        lines += ["| method | backbone | labels | micro F1 | micro recall | macro F1 | balanced acc. | paper |",
                  "|---|---|---|---|---|---|---|---|"]
        floor = summary.get("classification_floor")
        if floor:
            lines.append(f"| constant (training prevalence) | — | — | {cell(floor['f1'])} | {cell(floor['recall'])} | "
                         f"{cell(floor['macro_f1'])} | {cell(floor['balanced_accuracy'])} | — |")
        lines += [f"| {c['method']} | {BACKBONE_NAMES[c['backbone']]} | {percent(c['fraction'])}% | {cell(c['f1'])} | "
                  f"{cell(c['recall'])} | {cell(c['macro_f1'])} | {cell(c['balanced_accuracy'])} | {_fmt(c['paper'])} |"
                  for c in summary["classification"]]
        lines.append("")
    if summary["segmentation"]:
        lines += ["| method | network | labels | IoU | Dice |", "|---|---|---|---|---|"]
        lines += [f"| {s['method']} | {s['net']} | {percent(s['fraction'])}% | {cell(s['iou'])} | {cell(s['dice'])} |"
                  for s in summary["segmentation"]]
        lines.append("")
    if summary.get("claims"):
        lines += ["| claim | difference (A − B) | A better in | verdict |", "|---|---|---|---|"]
        lines += [f"| {c['claim']} | {cell(c['difference'])} | {c['wins']}/{c['seeds']} seeds | {c['verdict']} |"
                  for c in summary["claims"]]
    return "\n".join(lines) + "\n"
