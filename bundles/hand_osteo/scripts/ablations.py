"""Run the hand_osteo ablations (journal Tables 3-7) on the quick preset and tabulate the test metrics.

    python bundles/hand_osteo/scripts/ablations.py --seeds 0 1 2 [--only simclr no_segmentation] [--preset quick]
        [--reuse bundles/hand_osteo/runs/quick_seed{seed}]

Every variant is ``train.json`` + the preset + ``ablations/<name>.json`` with its own output folder under
``--out``; the segmentation and patch stages are shared by all variants with equal settings (one folder per
seed and segmentation variant), so they are computed once. ``--reuse`` points at finished ``bash scripts/run.sh
demo --seed S --output_dir ...`` runs: their segmentation and patches serve the multi-decoder variants and the
full method (SimCLR) is that run's own output folder (every stage up to date, so nothing is recomputed). The
screening-gates stage is left out (``gates_enabled`` false): it does not change the test metrics.

Writes ``<out>/ablations.json`` and ``ablations.md``: mean ± std over the seeds of F1, AUC and accuracy with the
difference to the full method, and per variant the journal's ordering (the full method beats it) tested on the
test AUC in two ways: over seeds (in how many seeds it holds; paired t-test over the seeds, two-sided) and over
subjects (paired bootstrap of the AUC difference on the test subjects, pooled over the seeds, 2000 resamples).
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


def run_variant(name: str, seed: int, out: Path, preset: str | None, extra: dict, reuse: str | None = None) -> dict:
    from monai.bundle import ConfigWorkflow

    files = [str(CONFIGS / "train.json")] + ([str(CONFIGS / f"{preset}.json")] if preset else [])
    files.append(str(CONFIGS / "ablations" / f"{name}.json"))
    seg = "single" if name == "single_decoder" else "multi"
    shared = out / "shared" / f"seed{seed}"
    over = {"bundle_root": str(BUNDLE), "seed": seed, "output_dir": str(out / name / f"seed{seed}"),
            "segmentation_dir": str(shared / f"segmentation_{seg}"), "gates_enabled": False, **extra}
    if name not in ("no_segmentation",):
        over["patches_dir"] = str(shared / f"patches_{seg}")
    run = Path(reuse.format(seed=seed)) if reuse else None
    if run is not None and seg == "multi":
        if not (run / "patches" / "index.json").is_file():
            raise FileNotFoundError(f"--reuse {reuse}: {run} holds no finished run (no patches/index.json); run "
                                    f"`bash scripts/run.sh demo --seed {seed} --output_dir {run}` first.")
        over["segmentation_dir"] = str(run / "segmentation")
        if "patches_dir" in over:
            over["patches_dir"] = str(run / "patches")
        if name == "simclr":
            over["output_dir"] = str(run)
            over.pop("gates_enabled")
    wf = ConfigWorkflow(config_file=files, meta_file=str(CONFIGS / "metadata.json"),
                        logging_file=str(CONFIGS / "logging.conf"), workflow_type=None, **over)
    wf.initialize()
    start = time.perf_counter()
    wf.run()
    wf.finalize()
    eval_dir = Path(over["output_dir"]) / "eval"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    return {**next(iter(metrics["runs"].values())), "seconds": round(time.perf_counter() - start, 1),
            "subjects": _subject_scores(eval_dir)}


def _subject_scores(eval_dir: Path) -> dict[str, list]:
    """{subject_id: [label, probability]} of the run's test subjects (its ``predictions.json``)."""
    pred = json.loads((eval_dir / "predictions.json").read_text())
    return {str(s["subject_id"]): [int(s["label"]), float(s["probability"])] for s in pred}


def ordering_tests(full: dict, variant: dict, resamples: int = 2000, seed: int = 0) -> dict:
    """Does the full method beat ``variant`` on test AUC? Over seeds (count, paired t-test) and over subjects
    (paired bootstrap of the pooled AUC difference; the two runs of a seed score the same test subjects).

    The bootstrap resamples each seed's subjects separately and averages the per-seed differences (each seed has
    its own cohort), which ``monai_osteo.engines.hand_osteo.evaluation.paired_auc_difference`` (one set of
    subjects) does not do; per seed it is the same paired percentile bootstrap."""
    from scipy.stats import ttest_rel
    from sklearn.metrics import roc_auc_score

    seeds = sorted(set(full) & set(variant))
    d = np.array([full[s]["auc"] - variant[s]["auc"] for s in seeds])
    out = {"seeds": len(seeds), "holds_in": int((d > 0).sum()), "delta_auc": float(d.mean()) if len(d) else None,
           "t_test_p": float(ttest_rel([full[s]["auc"] for s in seeds], [variant[s]["auc"] for s in seeds]).pvalue)
           if len(seeds) > 1 and np.ptp(d) > 0 else None}
    groups = []  # per seed: labels, full scores, variant scores over the subjects both scored
    for s in seeds:
        a, b = full[s].get("subjects"), variant[s].get("subjects")
        if not a or not b:
            return {**out, "bootstrap_ci": None}
        common = sorted(set(a) & set(b))
        groups.append((np.array([a[k][0] for k in common]), np.array([a[k][1] for k in common]),
                       np.array([b[k][1] for k in common])))
    rng = np.random.default_rng(seed)

    def delta(idx):  # mean over seeds of the per-seed AUC difference on resampled subjects
        vals = []
        for (y, p, q), i in zip(groups, idx):
            if len(set(y[i])) < 2:
                return None
            vals.append(roc_auc_score(y[i], p[i]) - roc_auc_score(y[i], q[i]))
        return float(np.mean(vals))

    boots = [v for v in (delta([rng.integers(0, len(g[0]), len(g[0])) for g in groups]) for _ in range(resamples))
             if v is not None]
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (None, None)
    return {**out, "bootstrap_ci": [float(lo), float(hi)] if boots else None,
            "bootstrap_p_le_0": float(np.mean(np.asarray(boots) <= 0)) if boots else None}


#: the journal's ordering each variant tests (the full method beats it), Tables 3-7
ORDERING = {"supcon": "T3: SimCLR > SupCon", "swav": "T3: SimCLR > SwAV", "vicreg": "T3: SimCLR > VICReg",
            "single_decoder": "T5: multi-decoder > single decoder",
            "no_segmentation": "T4: bone patches > no segmentation",
            "conventional_multicrop": "T7: constrained > conventional multi-crop",
            "supervised_only": "T6: SSL + probe > supervised only"}


def table(results: dict, resamples: int = 2000) -> str:
    keys = ("f1", "auc", "accuracy")
    ref = results.get("simclr")

    def ms(vals):
        v = np.asarray(vals, dtype=float)
        return v.mean(), (v.std(ddof=1) if len(v) > 1 else 0.0)

    lines = ["| variant | seeds | " + " | ".join(f"{k} | Δ" for k in keys) + " | test AUC per seed |",
             "|---|---|" + "---|---|" * len(keys) + "---|"]
    for name, runs in results.items():
        cells = []
        for k in keys:
            m, s = ms([r[k] for r in runs.values()])
            common = [seed for seed in runs if ref is not None and seed in ref]  # Δ over the seeds both ran
            d = ("" if ref is None or name == "simclr" or not common else
                 f"{np.mean([runs[seed][k] - ref[seed][k] for seed in common]):+.3f}")
            cells.append(f"{m:.3f} ± {s:.3f} | {d}")
        per_seed = ", ".join(f"{seed}: {runs[seed]['auc']:.3f}" for seed in sorted(runs))
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {per_seed} |")
    text = ("Subject-level test metrics (positive label), mean ± std over seeds; Δ = difference to the full "
            "method (SimCLR, multi-decoder, constrained multi-crop) over the seeds both ran\n\n"
            + "\n".join(lines) + "\n")
    if ref is None:
        return text
    rows = ["| ordering (journal) | seeds where it holds | ΔAUC full − variant | paired t-test over seeds, p | "
            "paired bootstrap over subjects, 95% CI of ΔAUC | holds? |", "|---|---|---|---|---|---|"]
    for name, runs in results.items():
        if name not in ORDERING:
            continue
        t = ordering_tests(ref, runs, resamples)
        if not t["seeds"]:
            continue
        ci = t.get("bootstrap_ci")
        verdict = ("yes" if ci and ci[0] > 0 else "no (reversed)" if ci and ci[1] < 0 else
                   "not shown (CI includes 0)" if ci else "n/a")
        p = "n/a" if t["t_test_p"] is None else f"{t['t_test_p']:.3f}"
        rows.append(f"| {ORDERING[name]} | {t['holds_in']}/{t['seeds']} | {t['delta_auc']:+.3f} | {p} | "
                    + (f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "n/a") + f" | {verdict} |")
    return (text + "\nThe journal's orderings on test AUC: \"holds\" when the paired bootstrap CI over subjects "
            "(pooled over the seeds) excludes 0; the t-test over 3 seeds has little power and is shown beside it.\n\n"
            + "\n".join(rows) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--only", nargs="+", default=ORDER, choices=ORDER)
    p.add_argument("--preset", default="quick", help="override file in configs/ ('' for the paper's settings)")
    p.add_argument("--out", default=str(BUNDLE / "runs" / "ablations"))
    p.add_argument("--set", nargs="*", default=[], help="extra overrides KEY=JSON, e.g. ssl_epochs=2")
    p.add_argument("--reuse", default=None,
                   help="finished demo runs to share: a path with {seed}, e.g. "
                   "bundles/hand_osteo/runs/quick_seed{seed}")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    out = Path(args.out)
    path = out / "ablations.json"
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for seed in args.seeds:
        for name in args.only:
            row = run_variant(name, seed, out, args.preset or None, extra, args.reuse)
            results = record(path, name, seed, row)
    results = results or (json.loads(path.read_text()) if path.is_file() else {})
    print(table({k: results[k] for k in ORDER if k in results}))
    return 0


def record(path: Path, name: str, seed: int, row: dict) -> dict:
    """Add one variant/seed row to ``path`` and rewrite the tables; returns all rows.

    The file is re-read under an exclusive lock, so several ``ablations.py`` processes sharing ``--out`` (e.g.
    two variants of a seed run side by side) each add their rows instead of overwriting the others'."""
    import fcntl

    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.is_file() else {}
        results.setdefault(name, {})[str(seed)] = row
        atomic_write_json(path, results)
        atomic_write_text(path.parent / "ablations.md", table({k: results[k] for k in ORDER if k in results}))
    return results


if __name__ == "__main__":
    sys.exit(main())
