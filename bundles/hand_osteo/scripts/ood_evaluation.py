"""Do the screening gates refuse what the screener cannot screen, and pass the hands it can?

    python bundles/hand_osteo/scripts/ood_evaluation.py --run bundles/hand_osteo/runs/quick [--quick] \
        [--ood-dir DIR] [--per-category N] [--paper-hands N] [--output DIR]

Screens, with ``inference.json`` (gates on) and the run's models:
- the out-of-distribution set of :mod:`monai_osteo.data.ood_set` (built into ``--ood-dir`` if missing): other
  anatomy and modalities, natural images, phantoms without a hand or with other bones, synthetic images;
- the held-out phantom hands of the run's datalist (``--split``, default the test subjects);
- ``--paper-hands`` paper-size phantom hands (3588 x 2515, generated with another seed).

Prints and writes (``--output``, default ``<run>/ood``: ``ood_evaluation.json`` and ``.md``): the rejection rate per
OOD category (target 100 %), the false-rejection rate on the hands (target <= 2 %), which gate catches what, and
how well each raw signal separates hands from OOD images (AUROC: layout, fragmentation and feature scores, the
segmentation's uncertainty (1 - confidence) and mutual information, the classifier's energy; larger = more OOD
for each, so 1.0 = perfect).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GATES = ("input", "anatomy", "features")


def screen(files: list[str], run: Path, quick: bool, out: Path, overrides: dict | None = None) -> list[dict]:
    """Screen ``files`` with inference.json; one report per file (``{"error": ...}`` for unreadable ones)."""
    from monai.bundle import ConfigWorkflow

    configs = [CONFIGS / "train.json", *([CONFIGS / "quick.json"] if quick else []), CONFIGS / "inference.json"]
    wf = ConfigWorkflow(config_file=[str(c) for c in configs], workflow_type="infer", logging_file=False,
                        models_dir=str(run), report_dir=str(out), input_files=files, record_source=True,
                        report_png=False, **(overrides or {}))
    wf.initialize()
    wf.run()
    wf.finalize()
    summary = json.loads((out / "summary.json").read_text())
    by_source = {}
    for entry in summary["screened"]:
        report = json.loads((out / f"{entry['id']}.json").read_text())
        by_source[report["source"]] = report
    for fail in summary["failures"]:
        by_source[fail["source"]] = {"error": fail["error"], "decision": -1, "gates": []}
    return [by_source[f] for f in files]


def signals(report: dict) -> dict:
    """The raw signals of one report (NaN where absent)."""
    g = {r["gate"]: r for r in report.get("gates", [])}
    seg = report.get("segmentation", {})
    nan = float("nan")

    def num(x):
        return nan if x is None else float(x)

    return {"layout": num(g.get("anatomy", {}).get("layout_score", nan)),
            "fragmentation": num(g.get("anatomy", {}).get("fragmentation", nan)),
            "segmentation_uncertainty": num(g.get("anatomy", {}).get("segmentation_uncertainty", nan)),
            "features": num(g.get("features", {}).get("feature_score", nan)),
            "energy": num(g.get("features", {}).get("energy", nan)),
            "mutual_information": num(seg.get("mean_mutual_information_in_bones", nan))}


def caught_by(report: dict) -> list[str]:
    if "error" in report:
        return ["read_error"]
    return [g["gate"] for g in report.get("gates", []) if g.get("passed") is False]


def auroc(hands: list[float], ood: list[float]) -> float | None:
    """AUROC of a larger-is-OOD signal; missing values (no bone, unreadable) count as maximally OOD."""
    h = np.nan_to_num(np.asarray(hands, float), nan=np.inf, posinf=1e12)
    o = np.nan_to_num(np.asarray(ood, float), nan=np.inf, posinf=1e12)
    h, o = np.minimum(h, 1e12), np.minimum(o, 1e12)
    if not len(h) or not len(o):
        return None
    return float(roc_auc_score(np.r_[np.zeros(len(h)), np.ones(len(o))], np.r_[h, o]))


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="run folder with model.pt, segmentation.pt, gates.pt")
    p.add_argument("--quick", action="store_true", help="the run used the quick preset (configs/quick.json)")
    p.add_argument("--datalist", type=Path, help="datalist of the held-out hands (default: the quick/default phantom)")
    p.add_argument("--split", default="test")
    p.add_argument("--ood-dir", type=Path, help="OOD set folder (built there if it has no ood_set.json)")
    p.add_argument("--per-category", type=int, default=None)
    p.add_argument("--paper-hands", type=int, default=0, help="paper-size phantom hands to screen too")
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from monai.data import load_decathlon_datalist

    from monai_osteo.data.ood_set import build_ood_set

    bundle = CONFIGS.parent
    out = args.output or args.run / "ood"
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ood_eval_"))
    ood_dir = args.ood_dir or tmp / "ood_set"
    manifest = ood_dir / "ood_set.json"
    records = (json.loads(manifest.read_text())["records"] if manifest.is_file() and args.per_category is None
               else build_ood_set(ood_dir, per_category=args.per_category))
    phantom = "phantom_quick" if args.quick else "phantom_default"
    datalist = args.datalist or bundle / "data" / phantom / "datalist.json"
    hands = [d["image"] for d in load_decathlon_datalist(str(datalist), data_list_key=args.split)]
    groups = {"hands (held out)": hands}
    if args.paper_hands:
        from monai_osteo.data.phantoms.cohort import generate_hand_cohort

        paper = generate_hand_cohort(tmp / "paper", subjects=args.paper_hands, unlabeled=0, seed=12345, height=3588,
                                     progress=False)
        raw = json.loads(Path(paper).read_text())
        groups["hands (paper size)"] = [d["image"] for k in ("training", "validation", "test") if raw.get(k)
                                        for d in load_decathlon_datalist(str(paper), data_list_key=k)]
    by_cat = defaultdict(list)
    for r in records:
        by_cat[r["category"]].append(r["image"])
    reports = {}
    for name, files in [*groups.items(), *by_cat.items()]:
        reports[name] = screen(files, args.run, args.quick, tmp / "reports" / name.replace(" ", "_"))

    rows, table = {}, []
    table.append("| set | images | no decision | input | anatomy | features | read error |")
    table.append("|---|---|---|---|---|---|---|")
    for name, reps in reports.items():
        refused = sum(r["decision"] == -1 for r in reps)
        catches = Counter(c for r in reps for c in caught_by(r))
        rows[name] = {"images": len(reps), "no_decision": refused, **{k: catches.get(k, 0) for k in
                                                                      (*GATES, "read_error")}}
        table.append(f"| {name} | {len(reps)} | {refused} ({100 * refused / max(len(reps), 1):.0f} %) | "
                     + " | ".join(str(catches.get(k, 0)) for k in (*GATES, "read_error")) + " |")
    ood_reports = [r for k, v in reports.items() if not k.startswith("hands") for r in v]
    hand_reports = reports["hands (held out)"]
    ood_screened = [r for r in ood_reports if "error" not in r]
    sep = {}
    for k in ("layout", "fragmentation", "segmentation_uncertainty", "features", "energy", "mutual_information"):
        sep[k] = auroc([signals(r)[k] for r in hand_reports], [signals(r)[k] for r in ood_screened])
    n_ood = len(ood_reports)
    source_of = {r["image"]: r["source"] for r in records}
    per_image = [{"set": name, "source": source_of.get(r.get("source"), "phantom hand"), "decision": r["decision"],
                  "caught_by": caught_by(r), **signals(r)} for name, reps in reports.items() for r in reps]
    gates_state = json.loads((args.run / "gates.json").read_text())
    gates_state["thresholds"] = {k: (float("inf") if v is None else v) for k, v in gates_state["thresholds"].items()}
    margins = {}
    for k in ("layout", "fragmentation", "segmentation_uncertainty", "features"):
        hand_vals = [row[k] for row in per_image if row["set"] == "hands (held out)" and np.isfinite(row[k])]
        ood_vals = [row[k] for row in per_image if not row["set"].startswith("hands") and np.isfinite(row[k])]
        margins[k] = {"threshold": gates_state["thresholds"].get(k), "hands_max": max(hand_vals, default=None),
                      "ood_min": min(ood_vals, default=None)}
    summary = {
        "ood_images": n_ood, "ood_rejected": sum(r["decision"] == -1 for r in ood_reports),
        "ood_rejection_rate": sum(r["decision"] == -1 for r in ood_reports) / max(n_ood, 1),
        "hands_false_rejection_rate": {k: rows[k]["no_decision"] / max(rows[k]["images"], 1)
                                       for k in groups},
        "separation_auroc": sep, "per_set": rows, "margins": margins, "per_image": per_image,
        "ood_given_a_decision": [{"category": next(c for c, fs in by_cat.items() if r.get("source") in fs),
                                  "source": source_of.get(r.get("source")), "decision": r["decision_name"]}
                                 for r in ood_reports if r["decision"] != -1],
    }
    lines = ["## Screening gates: out-of-distribution evaluation", "", *table, "",
             f"OOD rejected: {summary['ood_rejected']} / {n_ood} ({100 * summary['ood_rejection_rate']:.1f} %); "
             + "; ".join(f"{k} false rejection {100 * v:.1f} %"
                         for k, v in summary["hands_false_rejection_rate"].items()),
             "", "| signal | AUROC hands vs screened OOD images |", "|---|---|",
             *[f"| {k} | {'-' if v is None else f'{v:.3f}'} |" for k, v in sep.items()],
             "", "| learned score | threshold | largest on held-out hands | smallest on screened OOD images |",
             "|---|---|---|---|",
             *[f"| {k} | {_fmt(m['threshold'])} | {_fmt(m['hands_max'])} | {_fmt(m['ood_min'])} |"
               for k, m in margins.items()]]
    if summary["ood_given_a_decision"]:
        lines += ["", "OOD images given a decision: " + "; ".join(f"{d['source']} ({d['decision']})"
                                                               for d in summary["ood_given_a_decision"])]
    text = "\n".join(lines)
    print(text)
    (out / "ood_evaluation.md").write_text(text + "\n")
    (out / "ood_evaluation.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
