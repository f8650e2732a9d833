"""Run the medsass bundle for several seeds and summarise: mean ± std and 95% CI per row, paired comparisons.

    python bundles/medsass/scripts/seeds.py --cohort skin --seeds 0 1 2 --preset quick

Each seed runs ``train.json`` (+ ``quick.json`` with ``--preset quick``) into ``runs/<preset>_<cohort>_seed<k>``
(stages already done are skipped), then ``runs/<preset>_<cohort>_seeds.{json,md}`` are written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from monai_osteo.bundle.medsass import seeds_markdown, summarise_seeds
from monai_osteo.bundle.seed_runs import bundle_configs, run_bundle_seed
from monai_osteo.io import atomic_write_json, atomic_write_text

BUNDLE = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", default="skin", choices=["skin", "fluorescence", "hand"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--preset", default="quick", choices=["quick", "paper"])
    ap.add_argument("--runs", type=Path, default=BUNDLE / "runs")
    ap.add_argument("--summarise-only", action="store_true", help="do not run, only summarise existing runs")
    ap.add_argument("overrides", nargs="*", help="extra '--id value' pairs passed to every run")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    configs = bundle_configs(BUNDLE, args.preset)
    reports = []
    for seed in args.seeds:
        out = args.runs / f"{args.preset}_{args.cohort}_seed{seed}"
        if not args.summarise_only:
            run_bundle_seed(BUNDLE, configs, seed, out, ["--cohort", args.cohort, *args.overrides])
        reports.append(json.loads((out / "report" / "metrics.json").read_text()))
    summary = summarise_seeds(reports)
    stem = args.runs / f"{args.preset}_{args.cohort}_seeds"
    atomic_write_json(stem.with_suffix(".json"), summary)
    atomic_write_text(stem.with_suffix(".md"), seeds_markdown(summary))
    print(seeds_markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
