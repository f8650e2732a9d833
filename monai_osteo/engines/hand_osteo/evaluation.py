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

from monai_osteo.bundle.hand_osteo import patch_records
from monai_osteo.data.labels import BONES
from monai_osteo.io import atomic_write_json, atomic_write_text
from monai_osteo.metrics.screening import screening_metrics
from monai_osteo.metrics.subject import aggregate_subjects
from monai_osteo.report import bone_contributions, save_bone_contribution_png, save_roc_png
from monai_osteo.transforms.presets import bone_patch_preprocessingd

__all__ = ["ScreeningEvaluation", "format_table", "run_names"]

logger = logging.getLogger("monai_osteo.hand_osteo")
METRICS = ("precision", "recall", "f1", "auc", "accuracy")


class ScreeningEvaluation:
    """Subject-level screening metrics of one or more trained runs (e.g. three seeds) on a split.

    Each run directory is a ``train.json`` output (it holds ``run.json``, naming its patch cache and classifier).
    The classifier is re-applied to the run's cached patches of ``split``; a subject's probability is the mean
    of its bones' (Eq. 10), the decision its argmax. Written to ``output_dir``: ``metrics.json`` (per run and
    mean ± std of precision, recall, F1, AUC, accuracy for the positive label), ``metrics.md`` (table),
    ``roc.png`` (one curve per run), ``bone_contributions.png`` (mean ± std positive probability per bone over
    the true positives, paper Fig. 5; pooled over runs) and ``predictions.json``.

    Args:
        run_dirs: output folders of trained runs.
        output_dir: where to write.
        classifier: a ``BoneClassifier`` with the runs' architecture.
        split: "test" (default) or "validation".
        device: "cpu", "cuda", ...
    """

    def __init__(self, run_dirs: str | os.PathLike | Sequence[str | os.PathLike], output_dir: str | os.PathLike,
                 classifier: torch.nn.Module, split: str = "test", device: str | torch.device = "cpu") -> None:
        run_dirs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
        if not run_dirs:
            raise ValueError("run_dirs must name at least one trained run (the output_dir of train.json).")
        self.run_dirs = [Path(r) for r in run_dirs]
        self.output_dir, self.classifier, self.split = Path(output_dir), classifier, split
        self.device = torch.device(device)

    @torch.no_grad()
    def predict(self, records: list[dict], patch_size: int, batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, C) of the classifier on the patch records (the probe's preprocessing)."""
        transform = bone_patch_preprocessingd("image", patch_size)
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
        probs = self.predict(records, spatial)
        subjects = aggregate_subjects([{**r, "probs": p} for r, p in zip(records, probs)])
        metrics = screening_metrics([s["label"] for s in subjects], [s["probability"] for s in subjects])
        return metrics, subjects

    def run(self) -> dict:
        per_run, curves, all_subjects = {}, {}, []
        for run_dir, name in zip(self.run_dirs, run_names(self.run_dirs)):
            metrics, subjects = self._evaluate_run(run_dir)
            per_run[name] = metrics
            curves[f"{name} (AUC {metrics['auc']:.3f})"] = ([s["label"] for s in subjects],
                                                            [s["probability"] for s in subjects])
            all_subjects.extend(dict(s, run=name) for s in subjects)
            logger.info("%s: %s", name, {k: round(metrics[k], 3) for k in METRICS})
        summary = {k: _mean_std([m[k] for m in per_run.values()]) for k in METRICS}
        result = {"split": self.split, "runs": per_run, "summary": summary,
                  "subjects_per_run": next(iter(per_run.values()))["n"]}
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
    """Markdown table of :meth:`ScreeningEvaluation.run`'s result."""
    head = "| run | " + " | ".join(METRICS) + " | subjects (positives) |\n|---|" + "---|" * (len(METRICS) + 1) + "\n"
    rows = [f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS) + f" | {m['n']} ({m['positives']}) |"
            for name, m in result["runs"].items()]
    s = result["summary"]
    rows.append("| **mean ± std** | " + " | ".join(f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" for k in METRICS) + " | |")
    return (f"Subject-level screening metrics on the {result['split']} split (positive label = osteoporosis; "
            "decision = argmax of the mean bone probability)\n\n" + head + "\n".join(rows) + "\n")
