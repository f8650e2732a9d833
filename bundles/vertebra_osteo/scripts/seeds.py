"""Run the vertebra_osteo bundle for several seeds and summarise: mean ± std per row, orderings over seeds.

    python bundles/vertebra_osteo/scripts/seeds.py --seeds 0 1 2 --preset quick [--ablation moe.json ...] [--id value]

Each seed runs ``train.json`` (+ ``quick.json`` with ``--preset quick``, + each ``--ablation`` file of
``configs/ablations``) into ``<runs>/<tag>_seed<k>`` (stages already done are skipped; ``<tag>`` = the preset and the
ablations that change the data or the cache, so the loss and MoE ablations, which only add rows, go to the main
run's folder, reuse its cache and pre-trainings and write ``report_<ablation>/`` beside its ``report/``); the cohort
is the same for every seed (``--phantom_seed``, default 0), so seeds vary the training only (initialisation, order,
augmentation, the pre-training subset). Then ``<runs>/<preset>[_<ablations>]_seeds.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from monai_osteo.bundle.seed_runs import bundle_configs, run_bundle_seed
from monai_osteo.bundle.vertebra_report import seeds_markdown, summarise_seeds
from monai_osteo.io import atomic_write_json, atomic_write_text

BUNDLE = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--preset", default="quick", choices=["quick", "paper"])
    ap.add_argument("--ablation", nargs="*", default=[], help="files in configs/ablations layered on every run")
    ap.add_argument("--tag", default=None, help="name of the run folders (default: preset + ablations)")
    ap.add_argument("--phantom_seed", type=int, default=0)
    ap.add_argument("--runs", type=Path, default=BUNDLE / "runs")
    ap.add_argument("--summarise-only", action="store_true", help="do not run, only summarise existing runs")
    args, overrides = ap.parse_known_args(argv)  # the rest: '--id value' pairs passed to every run
    args.overrides = [o for o in overrides if o != "--"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    configs = bundle_configs(BUNDLE, args.preset, args.ablation)
    stems = [Path(a).stem for a in args.ablation]
    report, own_folder = "report", []  # the report folder: the last ablation's report_name, if any sets one
    for a, stem in zip(args.ablation, stems):
        content = json.loads((BUNDLE / "configs" / "ablations" / a).read_text())
        report = content.get("report_name", report)
        if "report_name" not in content:  # it changes the data or the cache: a folder of its own
            own_folder.append(stem)
    tag = args.tag or "_".join([args.preset, *own_folder])
    reports = []
    for seed in args.seeds:
        out = args.runs / f"{tag}_seed{seed}"
        if not args.summarise_only:
            # the cohort does not change with the training seed
            run_bundle_seed(BUNDLE, configs, seed, out, [*args.overrides, "--phantom_seed", str(args.phantom_seed)])
        reports.append(json.loads((out / report / "metrics.json").read_text()))
    summary = summarise_seeds(reports)
    stem = args.runs / ("_".join([args.preset, *stems]) + "_seeds")
    atomic_write_json(stem.with_suffix(".json"), summary)
    atomic_write_text(stem.with_suffix(".md"), seeds_markdown(summary))
    print(seeds_markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
