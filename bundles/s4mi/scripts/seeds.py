"""Run the s4mi bundle for several seeds and summarise: mean ± std per cell, the paper's claims tested per seed.

    python bundles/s4mi/scripts/seeds.py --cohort skin --seeds 0 1 2 --preset quick
    python bundles/s4mi/scripts/seeds.py --cohort fluorescence --seeds 0 1 2 --preset quick --workflows classification

Each seed runs ``train.json`` (+ ``quick.json`` with ``--preset quick``) into ``runs/<preset>_<cohort>_seed<k>``
(stages already done are skipped), then ``runs/<preset>_<cohort>_seeds.{json,md}`` and the IoU-vs-label-fraction
figure ``runs/<preset>_<cohort>_seeds_iou.png`` (mean ± std) are written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from monai_osteo.bundle.s4mi_report import iou_figure, s4mi_seeds_markdown, summarise_s4mi_seeds
from monai_osteo.bundle.seed_runs import bundle_configs, run_bundle_seed
from monai_osteo.io import atomic_write_json, atomic_write_text

BUNDLE = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", default="skin", choices=["skin", "fluorescence"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--preset", default="quick", choices=["quick", "paper"])
    ap.add_argument("--workflows", nargs="+", default=["classification", "segmentation"],
                    choices=["classification", "segmentation"])
    ap.add_argument("--runs", type=Path, default=BUNDLE / "runs")
    ap.add_argument("--tag", default="", help="run folder name part: runs/<preset>_<cohort>_<tag>_seed<k>")
    ap.add_argument("--summarise-only", action="store_true", help="do not run, only summarise existing runs")
    ap.add_argument("overrides", nargs="*", help="extra '--id value' pairs passed to every run")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    configs = bundle_configs(BUNDLE, args.preset)
    reports = []
    for seed in args.seeds:
        out = args.runs / f"{args.preset}_{args.cohort}{'_' + args.tag if args.tag else ''}_seed{seed}"
        if not args.summarise_only:
            run_bundle_seed(BUNDLE, configs, seed, out, ["--cohort", args.cohort, "--workflows",
                                                         json.dumps(args.workflows).replace('"', "'"), *args.overrides])
        reports.append(json.loads((out / "report" / "metrics.json").read_text()))
    summary = summarise_s4mi_seeds(reports)
    stem = args.runs / f"{args.preset}_{args.cohort}{'_' + args.tag if args.tag else ''}_seeds"
    atomic_write_json(stem.with_suffix(".json"), summary)
    atomic_write_text(stem.with_suffix(".md"), s4mi_seeds_markdown(summary))
    if summary["segmentation"]:
        rows = [{"row": s["row"], "method": s["method"], "net": s["net"], "fraction": s["fraction"],
                 "iou": s["iou"]["mean"]} for s in summary["segmentation"]]
        errors = {(s["row"], s["net"]): s["iou"]["std"] for s in summary["segmentation"]}
        iou_figure(rows, Path(f"{stem}_iou.png"), summary["cohort"], errors)
    print(s4mi_seeds_markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
