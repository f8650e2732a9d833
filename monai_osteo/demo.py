"""End-to-end demo: phantom cohort -> radiograph reader -> 2nd-metacarpal cortical index screening.

The most complete job that exists until the hand_osteo bundle lands: it generates (or reuses) the
phantom hand cohort, reads every labelled radiograph and its annotator masks with
:class:`~monai_osteo.data.readers.LoadRadiographd`, measures the classical 2MCI on the annotators'
majority-vote M2 mask, fits a logistic model on the training subjects, picks the threshold on the
training + validation subjects' macro-F1 (the paper's selection criterion) and reports validation
and test metrics as JSON, a Markdown table and a ROC figure.

Run: ``python -m monai_osteo.demo --out runs/demo`` (``bash scripts/run.sh demo`` sets up first).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from monai_osteo.data.phantoms import ensure_hand_cohort
from monai_osteo.engines.hand_osteo.baseline import cortical_index_baseline, majority_vote, measure_cohort
from monai_osteo.io import atomic_write_text
from monai_osteo.report import save_roc_png

__all__ = ["main", "majority_vote", "measure_cohort", "run"]

logger = logging.getLogger("monai_osteo.demo")


def run(out: Path, subjects: int, height: int, seed: int, cohort_dir: Path | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    datalist = ensure_hand_cohort(cohort_dir or out / "cohort", "default", seed=seed, subjects=subjects,
                                  unlabeled=0, height=height)
    gen_s = time.perf_counter() - start
    baseline = cortical_index_baseline(datalist, "test")
    if "skipped" in baseline:
        raise RuntimeError(f"{datalist}: {baseline['skipped']}")
    splits = ("training", "validation", "test")
    y = {k: list(baseline["splits"][k]["labels"].values()) for k in splits}
    prob = {k: list(baseline["splits"][k]["predictions"].values()) for k in splits}
    results = {
        "method": baseline["method"],
        "threshold": baseline["threshold"],
        "metrics": {k: baseline["splits"][k]["metrics"] for k in splits},
        "cohort": str(datalist), "subjects": subjects, "height": height, "seed": seed,
        "failed_files": baseline["failed_files"], "generation_s": round(gen_s, 1),
        "total_s": round(time.perf_counter() - start, 1),
    }
    atomic_write_text(out / "metrics.json", json.dumps(results, indent=2) + "\n")
    cols = ("precision", "recall", "f1", "auc", "accuracy")
    table = ["| split | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for k, m in results["metrics"].items():
        table.append(f"| {k} | {m['n']} | " + " | ".join(f"{m[c]:.3f}" for c in cols) + " |")
    atomic_write_text(out / "metrics.md", "\n".join(table) + "\n")
    save_roc_png(out / "roc.png", {k: (y[k], prob[k]) for k in splits},
                 title="2MCI screening on phantom radiographs")
    logger.info("results in %s:\n%s", out, "\n".join(table))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_osteo.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--subjects", type=int, default=192, help="labelled phantom subjects (paper: 192)")
    parser.add_argument("--height", type=int, default=512, help="phantom image height in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cohort-dir", default=None, help="reuse/cache the phantom cohort here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    res = run(Path(args.out), args.subjects, args.height, args.seed,
              Path(args.cohort_dir) if args.cohort_dir else None)
    return 1 if res["failed_files"] else 0


if __name__ == "__main__":
    sys.exit(main())
