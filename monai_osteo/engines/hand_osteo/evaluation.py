"""Evaluate trained hand_osteo runs on held-out subjects: metrics (mean ± std over runs), ROC, bone contributions."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset

from monai_osteo.bundle.environment import versions
from monai_osteo.bundle.hand_osteo import patch_records
from monai_osteo.data.labels import BONES
from monai_osteo.engines.hand_osteo.baseline import cortical_index_baseline
from monai_osteo.io import atomic_write_json, atomic_write_text
from monai_osteo.metrics.screening import screening_metrics
from monai_osteo.metrics.subject import aggregate_subjects
from monai_osteo.report import bone_contributions, save_bone_contribution_png, save_roc_png
from monai_osteo.transforms.presets import bone_patch_preprocessingd

__all__ = ["ScreeningEvaluation", "format_table", "paired_auc_difference", "run_names"]

logger = logging.getLogger("monai_osteo.hand_osteo")
METRICS = ("precision", "recall", "f1", "auc", "accuracy")
BASELINE_NAME = "2MCI baseline"


class ScreeningEvaluation:
    """Subject-level screening metrics of one or more trained runs (e.g. three seeds) on a split.

    Each run directory is a ``train.json`` output (it holds ``run.json``, naming its patch cache and classifier).
    The classifier is re-applied to the run's cached patches of ``split``; a subject's probability is the mean
    of its bones' (Eq. 10), the decision its argmax. Written to ``output_dir``: ``metrics.json`` (per run and
    mean ± std of precision, recall, F1, AUC, accuracy for the positive label; the package versions),
    ``metrics.md`` (table), ``roc.png`` (one curve per run), ``bone_contributions.png`` (mean ± std positive
    probability per bone over the true positives, paper Fig. 5; pooled over runs) and ``predictions.json``.

    With ``datalist``, the classical baseline (:func:`cortical_index_baseline`: 2MCI + logistic model fitted on the
    training subjects) is computed on the same split and compared on the subjects both methods scored (every run
    and the baseline): ``metrics.json["baseline"]`` holds its metrics, ``n`` and per-subject ``predictions``, the
    runs' metrics on those subjects and the AUC difference (deep − baseline) with a paired bootstrap 95% CI per run
    (:func:`paired_auc_difference`); ``metrics.md`` gets the section "Classical baseline on the same subjects" and
    ``roc.png`` the "2MCI baseline" curve. A datalist without annotator masks skips the baseline with a message.

    Args:
        run_dirs: output folders of trained runs.
        output_dir: where to write.
        classifier: a ``BoneClassifier`` with the runs' architecture.
        split: "test" (default) or "validation".
        device: "cpu", "cuda", ...
        datalist: the datalist the runs were trained on (MONAI decathlon JSON), or ``None`` for no baseline.
        bootstrap_resamples: paired bootstrap resamples of the subjects for the AUC difference's CI.
        bootstrap_seed: seed of the bootstrap.
    """

    def __init__(self, run_dirs: str | os.PathLike | Sequence[str | os.PathLike], output_dir: str | os.PathLike,
                 classifier: torch.nn.Module, split: str = "test", device: str | torch.device = "cpu",
                 datalist: str | os.PathLike | None = None, bootstrap_resamples: int = 1000,
                 bootstrap_seed: int = 0) -> None:
        run_dirs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
        if not run_dirs:
            raise ValueError("run_dirs must name at least one trained run (the output_dir of train.json).")
        if bootstrap_resamples < 1:
            raise ValueError(f"bootstrap_resamples must be >= 1, got {bootstrap_resamples!r}.")
        self.run_dirs = [Path(r) for r in run_dirs]
        self.output_dir, self.classifier, self.split = Path(output_dir), classifier, split
        self.device = torch.device(device)
        self.datalist = None if datalist is None else Path(datalist)
        self.bootstrap_resamples, self.bootstrap_seed = int(bootstrap_resamples), int(bootstrap_seed)

    @torch.no_grad()
    def predict(self, records: list[dict], patch_size: int, batch_size: int = 32,
                normalization: str | None = None) -> np.ndarray:
        """Class probabilities (N, C) of the classifier on the patch records (the probe's preprocessing)."""
        transform = bone_patch_preprocessingd("image", patch_size, normalization)
        net = self.classifier.to(self.device).eval()
        loader = DataLoader(Dataset(records, transform), batch_size=batch_size, shuffle=False, num_workers=0)
        out = [torch.softmax(net(b["image"].to(self.device)).float(), 1).cpu() for b in loader]
        return torch.cat(out).numpy()

    def _evaluate_run(self, run_dir: Path) -> tuple[dict, list[dict]]:
        manifest = run_dir / "run.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest}: not found; run_dirs must be output folders of a finished "
                                    "train.json run (python -m monai.bundle run --config_file .../train.json).")
        run = json.loads(manifest.read_text())
        spatial = int(run["probe_spatial_size"])
        self.classifier.load_state_dict(torch.load(run["classifier"], map_location="cpu"))
        records = patch_records(run["patches"], "probe", [self.split])
        probs = self.predict(records, spatial, normalization=run.get("patch_normalization"))
        subjects = aggregate_subjects([{**r, "probs": p} for r, p in zip(records, probs)])
        metrics = screening_metrics([s["label"] for s in subjects], [s["probability"] for s in subjects])
        return metrics, subjects

    def run(self) -> dict:
        per_run, curves, all_subjects, run_subjects = {}, {}, [], {}
        for run_dir, name in zip(self.run_dirs, run_names(self.run_dirs)):
            metrics, subjects = self._evaluate_run(run_dir)
            per_run[name], run_subjects[name] = metrics, subjects
            curves[name] = ([s["label"] for s in subjects], [s["probability"] for s in subjects])  # legend: AUC, n
            all_subjects.extend(dict(s, run=name) for s in subjects)
            logger.info("%s: %s", name, {k: round(metrics[k], 3) for k in METRICS})
        summary = {k: _mean_std([m[k] for m in per_run.values()]) for k in METRICS}
        result = {"split": self.split, "runs": per_run, "summary": summary,
                  "subjects_per_run": next(iter(per_run.values()))["n"]}
        if self.datalist is not None:
            result["baseline"] = self._compare_baseline(run_subjects)
            if "predictions" in result["baseline"]:
                b = result["baseline"]
                curves[BASELINE_NAME] = ([b["labels"][k] for k in b["predictions"]], list(b["predictions"].values()))
        result["versions"] = versions()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.output_dir / "metrics.json", result)
        atomic_write_text(self.output_dir / "metrics.md", format_table(result))
        atomic_write_json(self.output_dir / "predictions.json", all_subjects)
        save_roc_png(self.output_dir / "roc.png", curves, title=f"Subject-level ROC ({self.split})")
        contrib = bone_contributions(all_subjects, BONES)
        save_bone_contribution_png(self.output_dir / "bone_contributions.png", contrib,
                                   title="Positive-class probability per bone (true positives)")
        logger.info("evaluation (%d run(s), %s): %s", len(per_run), self.split,
                    ", ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in summary.items()))
        return result

    def _compare_baseline(self, run_subjects: dict[str, list[dict]]) -> dict:
        """The baseline on ``self.split`` and the runs, both on the subjects every run and the baseline scored."""
        base = cortical_index_baseline(self.datalist, self.split)
        if "skipped" in base:
            return base
        deep = {name: {s["subject_id"]: s for s in subjects} for name, subjects in run_subjects.items()}
        common = [sid for sid in base["predictions"] if all(sid in d for d in deep.values())]
        disagree = [sid for sid in common if any(int(d[sid]["label"]) != base["labels"][sid] for d in deep.values())]
        info = {"method": base["method"], "split": self.split, "datalist": str(self.datalist)}
        if disagree:
            shown = ", ".join(disagree[:5]) + (", ..." if len(disagree) > 5 else "")
            msg = (f"{self.datalist}: the labels of {len(disagree)} subjects ({shown}) differ from the runs' patch "
                   "caches; pass the datalist the runs were trained on (--datalist_file).")
            logger.warning("2MCI baseline skipped: %s", msg)
            return {**info, "skipped": msg}
        if not common:
            msg = (f"no {self.split!r} subject was scored by both the runs and the 2MCI baseline; the datalist's "
                   "subject_id values must be those of the runs' patch caches (pass the runs' datalist).")
            logger.warning("2MCI baseline skipped: %s", msg)
            return {**info, "skipped": msg}
        left_out = {name: [sid for sid in d if sid not in base["predictions"]] for name, d in deep.items()}
        if any(left_out.values()):
            logger.warning("2MCI baseline: the comparison leaves out subjects the baseline could not score: %s",
                           {k: v for k, v in left_out.items() if v})
        y = np.array([base["labels"][sid] for sid in common], dtype=int)
        p_base = np.array([base["predictions"][sid] for sid in common])
        metrics = screening_metrics(y, p_base, base["threshold"])
        runs, differences = {}, {}
        for name, d in deep.items():
            p_deep = np.array([d[sid]["probability"] for sid in common])
            runs[name] = screening_metrics(y, p_deep)
            differences[name] = paired_auc_difference(y, p_deep, p_base, self.bootstrap_resamples,
                                                      self.bootstrap_seed)
        deep_auc = _mean_std([m["auc"] for m in runs.values()])
        mean_difference = deep_auc["mean"] - metrics["auc"]
        logger.info("%s AUC: deep %.3f%s (%s) | %s %.3f on the same %d subjects", self.split, deep_auc["mean"],
                    f" ± {deep_auc['std']:.3f}" if len(runs) > 1 else "", ", ".join(runs), BASELINE_NAME,
                    metrics["auc"], len(common))
        return {**info, "threshold": base["threshold"], "metrics": metrics, "n": len(common),
                "predictions": dict(zip(common, p_base.tolist())), "labels": dict(zip(common, y.tolist())),
                "runs": runs, "summary": {k: _mean_std([m[k] for m in runs.values()]) for k in METRICS},
                "auc_difference": {"mean_over_runs": mean_difference, "runs": differences},
                "unmeasurable": base["unmeasurable"], "failed_files": base["failed_files"], "left_out": left_out}


def paired_auc_difference(labels: Sequence[int], scores_a: Sequence[float], scores_b: Sequence[float],
                          resamples: int = 1000, seed: int = 0) -> dict:
    """AUC(a) − AUC(b) of two scorings of the same subjects, with a paired bootstrap 95% percentile CI.

    Subjects are resampled with replacement (the same draw for both scorings: paired), ``resamples`` times with
    ``numpy.random.default_rng(seed)``. A resample is the multiset of subjects, so each AUC is the Mann-Whitney
    statistic weighted by how often a subject was drawn (ties count 1/2); resamples with a single class are dropped.
    Written with numpy rather than DeLong's test (no scipy/sklearn equivalent for the paired bootstrap).

    Args:
        labels: (N,) 0/1 labels.
        scores_a: (N,) scores of method a (higher = positive).
        scores_b: (N,) scores of method b, same subjects in the same order.
        resamples: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        ``difference`` (on all subjects), ``ci95`` [low, high], ``resamples`` (requested), ``valid`` (resamples with
        both classes), ``seed``. NaNs when the labels are of one class.

    - [0] Efron and Tibshirani, 1993, An Introduction to the Bootstrap (percentile interval).
    """
    y = np.asarray(labels, dtype=int)
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if y.ndim != 1 or a.shape != y.shape or b.shape != y.shape or len(y) == 0:
        raise ValueError(f"labels, scores_a and scores_b must be non-empty 1-D of one length, got {y.shape}, "
                         f"{a.shape}, {b.shape}.")
    out = {"difference": math.nan, "ci95": [math.nan, math.nan], "resamples": int(resamples), "valid": 0,
           "seed": int(seed)}
    pos, neg = y == 1, y == 0
    if not pos.any() or not neg.any():
        return out
    # (P, Q) win matrices of each scoring: 1 if the positive ranks above the negative, 1/2 on a tie
    wins = [np.sign(s[pos][:, None] - s[neg][None, :]) * 0.5 + 0.5 for s in (a, b)]
    counts = np.random.default_rng(seed).multinomial(len(y), np.full(len(y), 1.0 / len(y)), size=resamples)
    wp, wn = counts[:, pos].astype(float), counts[:, neg].astype(float)
    norm = wp.sum(1) * wn.sum(1)
    ok = norm > 0
    auc = [np.einsum("bi,ij,bj->b", wp[ok], w, wn[ok]) / norm[ok] for w in wins]
    diff = auc[0] - auc[1]
    out["difference"] = float(wins[0].mean() - wins[1].mean())
    out["valid"] = int(ok.sum())
    if len(diff):
        out["ci95"] = [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))]
    return out


def run_names(run_dirs: Sequence[Path]) -> list[str]:
    """Distinct display names of run folders: the folder name, with as many parent folders as needed to tell
    runs apart (``seed0/run`` and ``seed1/run``); the same folder given twice gets ``#2``."""
    paths = [Path(os.path.abspath(r)) for r in run_dirs]
    depth = 1
    while depth < max(len(p.parts) for p in paths):
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(set(paths)):
            break
        depth += 1
    names = ["/".join(p.parts[-depth:]) for p in paths]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def _mean_std(values: Sequence[float]) -> dict:
    v = np.asarray(values, dtype=float)
    ok = v[~np.isnan(v)]
    return {"mean": float(ok.mean()) if len(ok) else math.nan, "std": float(ok.std(ddof=1)) if len(ok) > 1 else 0.0,
            "n": int(len(ok))}


def format_table(result: dict) -> str:
    """Markdown table of :meth:`ScreeningEvaluation.run`'s result (and its baseline section, if any)."""
    head = "| run | " + " | ".join(METRICS) + " | subjects (positives) |\n|---|" + "---|" * (len(METRICS) + 1) + "\n"
    text = (f"Subject-level screening metrics on the {result['split']} split (positive label = osteoporosis; "
            "decision = argmax of the mean bone probability)\n\n" + head + "\n".join(_rows(result)) + "\n")
    base = result.get("baseline")
    if base is None:
        return text
    text += "\nClassical baseline on the same subjects"
    if "skipped" in base:
        return text + f": skipped ({base['skipped']})\n"
    m, diff = base["metrics"], base["auc_difference"]
    text += (f" ({base['n']} {result['split']} subjects scored by every run and by the {BASELINE_NAME}: "
             f"{base['method']}, threshold {base['threshold']:.3f} chosen on training + validation macro-F1)\n\n"
             + head + "\n".join(_rows(base)) + f"\n| {BASELINE_NAME} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS)
             + f" | {m['n']} ({m['positives']}) |\n")
    some = next(iter(diff["runs"].values()))
    text += (f"\nAUC difference (deep − {BASELINE_NAME}) on the same subjects: {diff['mean_over_runs']:+.3f} "
             f"(deep mean over runs − baseline); paired bootstrap 95% CI over subjects ({some['resamples']} "
             f"resamples, seed {some['seed']})\n\n| run | ΔAUC | 95% CI |\n|---|---|---|\n")
    text += "\n".join(f"| {name} | {d['difference']:+.3f} | [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] |"
                       for name, d in diff["runs"].items()) + "\n"
    return text


def _rows(result: dict) -> list[str]:
    rows = [f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS) + f" | {m['n']} ({m['positives']}) |"
            for name, m in result["runs"].items()]
    s = result["summary"]
    rows.append("| **mean ± std** | " + " | ".join(f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" for k in METRICS) + " | |")
    return rows
