"""Run the hand_osteo ablations (journal Tables 3-7) on the quick preset and tabulate the test metrics.

    python bundles/hand_osteo/scripts/ablations.py --seeds 0 1 2 [--only simclr no_segmentation] [--preset quick]

Every variant is ``train.json`` + the preset + ``ablations/<name>.json`` with its own output folder under
``--out``; the segmentation and patch stages are shared by all variants with equal settings (one folder per
seed and segmentation variant), so they are computed once. Writes ``<out>/ablations.json`` and ``ablations.md``
(mean ± std over the seeds of F1, AUC, accuracy, with the difference to the full method).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from monai_osteo.io import atomic_write_json, atomic_write_text

BUNDLE = Path(__file__).resolve().parents[1]
CONFIGS = BUNDLE / "configs"
ORDER = ["simclr", "supcon", "swav", "vicreg", "single_decoder", "no_segmentation", "conventional_multicrop",
         "supervised_only"]


def run_variant(name: str, seed: int, out: Path, preset: str | None, extra: dict) -> dict:
    from monai.bundle import ConfigWorkflow

    files = [str(CONFIGS / "train.json")] + ([str(CONFIGS / f"{preset}.json")] if preset else [])
    files.append(str(CONFIGS / "ablations" / f"{name}.json"))
    seg = "single" if name == "single_decoder" else "multi"
    shared = out / "shared" / f"seed{seed}"
    over = {"bundle_root": str(BUNDLE), "seed": seed, "output_dir": str(out / name / f"seed{seed}"),
            "segmentation_dir": str(shared / f"segmentation_{seg}"), **extra}
    if name not in ("no_segmentation",):
        over["patches_dir"] = str(shared / f"patches_{seg}")
    wf = ConfigWorkflow(config_file=files, meta_file=str(CONFIGS / "metadata.json"),
                        logging_file=str(CONFIGS / "logging.conf"), workflow_type=None, **over)
    wf.initialize()
    start = time.perf_counter()
    wf.run()
    wf.finalize()
    metrics = json.loads((Path(over["output_dir"]) / "eval" / "metrics.json").read_text())
    return {**next(iter(metrics["runs"].values())), "seconds": round(time.perf_counter() - start, 1)}


def table(results: dict) -> str:
    keys = ("f1", "auc", "accuracy")
    ref = results.get("simclr")

    def ms(vals):
        v = np.asarray(vals, dtype=float)
        return v.mean(), (v.std(ddof=1) if len(v) > 1 else 0.0)

    lines = ["| variant | seeds | " + " | ".join(f"{k} | Δ" for k in keys) + " |",
             "|---|---|" + "---|---|" * len(keys)]
    for name, runs in results.items():
        cells = []
        for k in keys:
            m, s = ms([r[k] for r in runs.values()])
            d = "" if ref is None or name == "simclr" else f"{m - ms([r[k] for r in ref.values()])[0]:+.3f}"
            cells.append(f"{m:.3f} ± {s:.3f} | {d}")
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return ("Subject-level test metrics (positive label), mean ± std over seeds; Δ = difference to the full "
            "method (SimCLR, multi-decoder, constrained multi-crop)\n\n" + "\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--only", nargs="+", default=ORDER, choices=ORDER)
    p.add_argument("--preset", default="quick", help="override file in configs/ ('' for the paper's settings)")
    p.add_argument("--out", default=str(BUNDLE / "runs" / "ablations"))
    p.add_argument("--set", nargs="*", default=[], help="extra overrides KEY=JSON, e.g. ssl_epochs=2")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    out = Path(args.out)
    path = out / "ablations.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for seed in args.seeds:
        for name in args.only:
            results.setdefault(name, {})[str(seed)] = run_variant(name, seed, out, args.preset or None, extra)
            atomic_write_json(path, results)
            atomic_write_text(out / "ablations.md", table({k: results[k] for k in ORDER if k in results}))
    print(table({k: results[k] for k in ORDER if k in results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
