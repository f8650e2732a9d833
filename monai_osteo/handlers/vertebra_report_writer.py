"""Handler of the vertebra_osteo inference: one JSON + PNG report per CT (per vertebra and per patient), a summary.

- [0] Huang et al., TP-SwAV + MoE (``papers/vertebral_ct_tpswav_moe.txt``) §2.2-2.3 (class, BMD and position heads,
  device-conditioned gate), §3.1 (a patient is positive when any of its vertebrae is: the paper's patient rule).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_osteo.data.vertebra_labels import LEVELS, VERSE_LABELS
from monai_osteo.handlers.vertebra_predictions import predicted_t_score
from monai_osteo.io import atomic_write_json
from monai_osteo.networks.nets.vertebra_net import split_vertebra_output

__all__ = ["VertebraReportWriter", "save_vertebra_report_png"]

logger = logging.getLogger("monai_osteo.vertebra_osteo")
#: cranio-caudal rank of a VerSe label value (T13 = 28 sits between T12 and L1)
_RANK = {VERSE_LABELS["T13"]: VERSE_LABELS["T12"] + 0.5}


class VertebraReportWriter:
    """Write ``<id>.json`` and ``<id>.png`` per CT on ``ITERATION_COMPLETED`` of an evaluator that sees one CT per
    batch (its vertebrae, as the multi-sample ROI extraction flattens them), and ``summary.json`` at the end.

    Per vertebra, cranial to caudal: its level in the label map, the probability of osteoporosis (softmax of the
    class logits), the predicted BMD in g/cm² (standardised output x ``bmd_std`` + ``bmd_mean``; null without the
    training statistics), the predicted T-score against the report device
    (:func:`~monai_osteo.handlers.predicted_t_score`), the predicted level (argmax of the position head, ``LEVELS``)
    with the QC flag ``level_mismatch`` when it differs from the label map's, and the gate weights. Per patient: the
    decision by the paper's any-positive rule at ``threshold``, the largest probability, the device reported
    against (and whether the input named it) and the vertebrae the ROI extraction skipped. Output ids come from the
    batch (``case_id``: ``r<index>_<hash>``, never the file name, unless the run keeps names); the input path is
    written only with ``keep_names``. Cases that could not be processed (``failed`` before the run, or a batch
    flagged ``failed`` by :class:`~monai_osteo.bundle.vertebra_inference.VertebraCaseGuard`) are listed in the summary.

    Args:
        output_dir: where to write (every file atomically).
        failed: the cases rejected before the run (``vertebra_inputs(...)["failed"]``).
        bmd_mean, bmd_std: the training BMD statistics (``normalisation.json`` of the cache); None: no BMD/T-score.
        device_references: ``{device: {"index", "ref_mean", "ref_sd"}}`` for the T-score.
        level_scale: per-level factor of the reference (DXA levels), see ``predicted_t_score``.
        threshold: decision threshold on a vertebra's probability.
        decision_levels: the levels the decision, the maximum probability and the T-scores use: the levels the model
            was trained and tested on (DXA of L1-L4 in the paper and the phantom). The other vertebrae are reported
            with ``assessed: false`` (outside the validated range); ``None`` assesses every vertebra.
        num_classes, num_positions: the output layout (class logits | BMD | position logits | gate).
        keep_names: write each input path in its report and the summary.
        report_png: also write the PNG.
        model_file: the weights used (its name and SHA-256 go in the reports).
        info: extra JSON-able settings recorded in every report (e.g. ROI size and spacing).
        display_window: HU window of the CT views.
        pred_key, case_key, prefix: output key, batch key of the case id, prefix of the view keys.
    """

    def __init__(self, output_dir: str | os.PathLike, failed: Sequence[Mapping] = (), bmd_mean: float | None = None,
                 bmd_std: float | None = None, device_references: Mapping[str, Mapping[str, float]] | None = None,
                 level_scale: Mapping[str, float] | None = None, threshold: float = 0.5, num_classes: int = 2,
                 num_positions: int = 18, keep_names: bool = False, report_png: bool = True,
                 model_file: str | os.PathLike | None = None, info: Mapping | None = None,
                 display_window: Sequence[float] = (-450.0, 1050.0), pred_key: str = "pred", case_key: str = "case_id",
                 prefix: str = "view_", decision_levels: Sequence[str] | None = ("L1", "L2", "L3", "L4")) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}.")
        self.output_dir, self.initial_failed = Path(output_dir), [dict(f) for f in failed]
        self.bmd = None if bmd_mean is None or bmd_std is None else (float(bmd_mean), float(bmd_std))
        self.references, self.level_scale = dict(device_references or {}), dict(level_scale or {})
        self.threshold, self.num_classes, self.num_positions = float(threshold), int(num_classes), int(num_positions)
        self.keep_names, self.report_png, self.model_file = keep_names, report_png, model_file
        self.info, self.display_window = dict(info or {}), tuple(float(v) for v in display_window)
        self.pred_key, self.case_key, self.prefix = pred_key, case_key, prefix
        self.decision_levels = None if decision_levels is None else [str(v) for v in decision_levels]
        self.reports: list[dict] = []
        self.failed: list[dict] = list(self.initial_failed)
        self._model: dict | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._tick)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write_summary)

    def _start(self, engine: Engine | None = None) -> None:
        self.reports, self.failed = [], list(self.initial_failed)
        self.output_dir.mkdir(parents=True, exist_ok=True)

    def _tick(self, engine: Engine) -> None:
        self._t0 = time.perf_counter()

    def model_info(self) -> dict:
        """Name and SHA-256 (first 16 hex digits) of the model file, computed once."""
        if self._model is None:
            self._model = {"file": None, "sha256": None}
            if self.model_file is not None and os.path.isfile(self.model_file):
                digest = hashlib.sha256()
                with open(self.model_file, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        digest.update(chunk)
                self._model = {"file": os.path.basename(str(self.model_file)), "sha256": digest.hexdigest()[:16]}
        return self._model

    def __call__(self, engine: Engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        if not isinstance(batch, Mapping) or not isinstance(output, Mapping):
            raise ValueError("VertebraReportWriter needs the collated batch and output: set decollate=False on the "
                             "evaluator.")
        pred = output[self.pred_key].detach().float().cpu()
        self.write(batch, pred, time.perf_counter() - getattr(self, "_t0", time.perf_counter()))

    def write(self, batch: Mapping, pred: torch.Tensor, seconds: float = 0.0) -> dict | None:
        """Write the report of the CT in ``batch`` (its vertebrae, collated) and its network output ``pred`` (B, K);
        returns the report (None for a failed case, which is recorded for the summary)."""
        cases = batch[self.case_key]
        case = str(_first(cases))
        if len({str(c) for c in (cases if isinstance(cases, (list, tuple)) else [case])}) > 1:
            raise ValueError(f"a batch must hold the vertebrae of one CT, got cases {sorted(set(cases))}: set the "
                             "dataloader's batch_size to 1 (the ROI extraction already batches a CT's vertebrae).")
        failed = batch.get("failed")
        if failed is not None:
            entry = {"id": case, "error": str(_first(failed))}
            if self.keep_names and "source" in batch:
                entry["input"] = str(_first(batch["source"]))
            self.failed.append(entry)
            return None
        out = split_vertebra_output(pred, self.num_classes, self.num_positions)  # checks the layout
        prob = torch.softmax(out["class"], dim=1)[:, 1].tolist()
        bmd_z = out["bmd"].tolist()
        pos_p = torch.softmax(out["position"], dim=1)
        pos_idx, pos_conf = pos_p.argmax(dim=1).tolist(), pos_p.max(dim=1).values.tolist()
        gates = out["gate"].tolist()
        device = str(_first(batch["dxa_device"]))
        levels, values = [str(v) for v in batch["level"]], _ints(batch["label_value"])
        vertebrae = []
        for i in range(pred.shape[0]):
            level, predicted = levels[i], LEVELS[pos_idx[i]] if pos_idx[i] < len(LEVELS) else str(pos_idx[i] + 1)
            assessed = self.decision_levels is None or level in self.decision_levels
            bmd = None if self.bmd is None else bmd_z[i] * self.bmd[1] + self.bmd[0]
            t = None if bmd is None or not assessed else predicted_t_score(bmd, device, level, self.references,
                                                                           self.level_scale)
            vertebrae.append({
                "level": level, "label_value": values[i], "assessed": assessed, "probability": _round(prob[i]),
                "positive": bool(assessed and prob[i] >= self.threshold), "bmd_g_cm2": _round(bmd),
                "t_score": _round(t),
                "predicted_level": predicted, "predicted_level_probability": _round(pos_conf[i]),
                "level_mismatch": (predicted != level) if level in LEVELS else None,
                "gate": [_round(g) for g in gates[i]]})
        vertebrae.sort(key=lambda v: _RANK.get(v["label_value"], v["label_value"]))
        assessed = [v for v in vertebrae if v["assessed"]]
        p_max = max((v["probability"] for v in assessed), default=None)
        positive = any(v["positive"] for v in assessed)
        decision = int(positive) if assessed else None
        given = bool(_first(batch.get("dxa_device_given", [True])))
        report = {
            "id": case,
            "decision": decision,
            "decision_name": ("osteoporosis" if positive else "no osteoporosis") if assessed else
            f"not assessed: no vertebra of {self.decision_levels} in the label map",
            "rule": "osteoporosis if any assessed vertebra's probability >= threshold (the paper's patient rule)",
            "decision_levels": self.decision_levels,
            "threshold": self.threshold, "max_probability": p_max,
            "positive_levels": [v["level"] for v in vertebrae if v["positive"]],
            "dxa_device": device,
            "dxa_device_source": "input" if given else "reference device (the input named none: no DXA)",
            "t_score_reference": {**{k: self.references.get(device, {}).get(k) for k in ("ref_mean", "ref_sd")},
                                  "level_scale": self.level_scale},
            "n_vertebrae": len(vertebrae), "vertebrae": vertebrae,
            "skipped_vertebrae": json.loads(str(_first(batch.get("skipped", ["[]"])))),
            "qc": {"level_mismatch": [v["level"] for v in vertebrae if v["level_mismatch"]],
                   "bmd": "ok" if self.bmd else "no training BMD statistics (normalisation.json): BMD and T-score "
                                                "not reported"},
            "model": self.model_info(), "settings": self.info, "seconds": round(seconds, 3),
        }
        if self.keep_names and "source" in batch:
            report["source"] = str(_first(batch["source"]))
        atomic_write_json(self.output_dir / f"{case}.json", report)
        if self.report_png and f"{self.prefix}sagittal" in batch:
            views = {k: np.asarray(torch.as_tensor(batch[f"{self.prefix}{k}"][0]).cpu())
                     for k in ("sagittal", "coronal", "sagittal_labels", "coronal_labels")}
            save_vertebra_report_png(self.output_dir / f"{case}.png", views, vertebrae, self.threshold,
                                     _header(report), self.display_window)
        self.reports.append({k: report[k] for k in ("id", "decision", "max_probability", "n_vertebrae", "dxa_device")}
                            | {"level_mismatch": len(report["qc"]["level_mismatch"])}
                            | ({"input": report["source"]} if "source" in report else {}))
        logger.info("%s: %s (max probability %s, %d vertebrae, %d assessed)", case, report["decision_name"],
                    "-" if p_max is None else f"{p_max:.3f}", len(vertebrae), len(assessed))
        return report

    def write_summary(self, engine: Engine | None = None) -> Path:
        """``summary.json``: ``reports`` (id, decision, max probability, vertebrae, device, level mismatches) and
        ``failed`` (id, reason)."""
        from monai_osteo.bundle import versions

        self.output_dir.mkdir(parents=True, exist_ok=True)
        summary = {"count": len(self.reports), "failed_count": len(self.failed), "threshold": self.threshold,
                   "reports": self.reports, "failed": self.failed, "model": self.model_info(),
                   "versions": versions()}
        path = atomic_write_json(self.output_dir / "summary.json", summary)
        logger.info("reported %d CT(s), %d skipped; reports in %s", len(self.reports), len(self.failed),
                    self.output_dir)
        return path


def _first(v):
    if isinstance(v, torch.Tensor):
        return v.reshape(-1)[0].item()
    return v[0] if isinstance(v, (list, tuple)) else v


def _ints(v) -> list[int]:
    return [int(x) for x in (v.reshape(-1).tolist() if isinstance(v, torch.Tensor) else v)]


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _header(report: Mapping) -> str:
    p = report["max_probability"]
    return (f"{report['id']}: {report['decision_name']} (max p = {'-' if p is None else f'{p:.2f}'} over "
            f"{'/'.join(report['decision_levels'] or ['all levels'])}, threshold "
            f"{report['threshold']:.2f}); DXA reference: {report['dxa_device']}"
            f"{'' if report['dxa_device_source'] == 'input' else ' (default)'}")


def save_vertebra_report_png(path: str | os.PathLike, views: Mapping[str, np.ndarray], vertebrae: Sequence[Mapping],
                             threshold: float = 0.5, title: str = "",
                             display_window: Sequence[float] = (-450.0, 1050.0), cmap: str = "RdYlGn_r") -> Path:
    """One-page report: sagittal and coronal views with each vertebra coloured by its probability (colour bar),
    vertebrae the model did not assess in grey, and bars of the per-vertebra probabilities (dashed line at
    ``threshold``; a predicted level that differs from the label map's is hatched and starred).

    Args:
        path: output PNG (written atomically).
        views: ``sagittal``, ``coronal`` (H, W) HU and ``sagittal_labels``, ``coronal_labels`` (H, W) label values,
            rows cranial first (:func:`~monai_osteo.bundle.vertebra_inference.spine_views`).
        vertebrae: per vertebra ``level``, ``label_value``, ``probability``, ``level_mismatch``,
            ``predicted_level``, cranial to caudal.
        threshold: the decision threshold.
        title: header line.
        display_window: HU window of the views.
        cmap: matplotlib colormap of the probability.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from monai_osteo.report.figures import _save_atomic

    lo, hi = float(display_window[0]), float(display_window[1])
    colours = colormaps[cmap]
    prob = {int(v["label_value"]): float(v["probability"]) for v in vertebrae if v.get("assessed", True)}
    fig = Figure(figsize=(12, 6.5), dpi=100)
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1.1, 0.05], wspace=0.3)
    for col, name in enumerate(("sagittal", "coronal")):
        ax = fig.add_subplot(grid[0, col])
        gray = np.clip((np.asarray(views[name], dtype=np.float64) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
        labels = np.asarray(views[f"{name}_labels"])
        rgb = np.repeat(gray[..., None], 3, axis=-1)
        for value in np.unique(labels[labels > 0]):
            m = labels == value
            tint = np.asarray(colours(prob[int(value)])[:3]) if int(value) in prob else np.array([0.6, 0.6, 0.6])
            rgb[m] = 0.45 * rgb[m] + 0.55 * tint
        ax.imshow(rgb, interpolation="nearest")
        if name == "sagittal":
            for v in vertebrae:
                rows = np.nonzero((labels == int(v["label_value"])).any(axis=1))[0]
                if len(rows):
                    ax.text(-2, rows.mean(), v["level"], ha="right", va="center", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), colours), cax=fig.add_subplot(grid[0, 3]),
                 label="probability of osteoporosis")
    ax = fig.add_subplot(grid[0, 2])
    y = np.arange(len(vertebrae))
    p = np.array([float(v["probability"]) for v in vertebrae])
    bars = ax.barh(y, p, color=[colours(x) if v.get("assessed", True) else "lightgrey" for x, v in zip(p, vertebrae)],
                   edgecolor="black", linewidth=0.5)
    for i, (bar, v) in enumerate(zip(bars, vertebrae)):
        if v.get("level_mismatch"):
            bar.set_hatch("//")
            ax.text(min(float(v["probability"]) + 0.02, 0.8), i, f"pred. {v['predicted_level']}", va="center",
                    fontsize=7)
    ax.axvline(threshold, ls="--", c="k", lw=1)
    ax.set_yticks(y, [f"{v['level']}*" if v.get("level_mismatch") else v["level"] for v in vertebrae], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of osteoporosis")
    if any(v.get("level_mismatch") for v in vertebrae):
        ax.set_title("* hatched: predicted level differs from the label map", fontsize=8)
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save_atomic(fig, path)
