"""``ScreeningGateFitter``: collect the screening results of an evaluator run and fit the screening gates."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

from ignite.engine import Engine, Events

from monai_osteo.io import atomic_write_json

__all__ = ["ScreeningGateFitter"]

logger = logging.getLogger("monai_osteo.hand_osteo")


class ScreeningGateFitter:
    """Fit the learned screening gates when the screening evaluator completes, and save them with the model.

    Attach to the evaluator of ``configs/fit_gates.json`` (the screening inferer over the training and validation
    radiographs). Per iteration it keeps the inferer's results (``engine.state.output[pred_key]``) and the batch's
    ``split``; on completion it calls :func:`~monai_osteo.engines.hand_osteo.gates.fit_screening_gates` and writes
    ``gates_file`` (``gates.pt``, atomically) and ``report_file`` (JSON: thresholds, calibration, sample sizes).

    Args:
        gates_file: where to save the gates (next to ``model.pt``; ``inference.json`` reads it from there).
        datalist: the datalist whose annotator masks of ``reference_splits`` fit the layout model (read when the run
            completes, :func:`~monai_osteo.engines.hand_osteo.gates.reference_layouts`).
        reference_splits: see ``datalist``.
        references: reference layouts given directly instead of ``datalist``.
        false_rejection_rate: target false-rejection rate of the learned gates together on the calibration split.
        fit_split, calibration_split: see :func:`~monai_osteo.engines.hand_osteo.gates.fit_screening_gates`.
        report_file: the JSON record (default: ``gates.json`` beside ``gates_file``).
        pred_key, split_key: output and batch keys.
    """

    def __init__(self, gates_file: str | os.PathLike, datalist: str | os.PathLike | None = None,
                 reference_splits: Sequence[str] = ("training",), references: Sequence[dict] | None = None,
                 false_rejection_rate: float = 0.02,
                 fit_split: str = "training", calibration_split: str | Sequence[str] = "validation",
                 report_file: str | os.PathLike | None = None, pred_key: str = "pred",
                 split_key: str = "split") -> None:
        self.gates_file = Path(gates_file)
        self.report_file = Path(report_file) if report_file else self.gates_file.with_suffix(".json")
        if (datalist is None) == (references is None):
            raise ValueError("give exactly one of datalist (annotator masks to learn the hand layout from) and "
                             "references (layouts measured already).")
        self.datalist, self.reference_splits = datalist, list(reference_splits)
        self.references, self.rate = references, float(false_rejection_rate)
        self.fit_split, self.calibration_split = fit_split, calibration_split
        self.pred_key, self.split_key = pred_key, split_key
        self.results: list[dict] = []
        self.splits: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self.fit)

    def _start(self, engine: Engine) -> None:
        self.results, self.splits = [], []

    def _collect(self, engine: Engine) -> None:
        results = engine.state.output[self.pred_key]
        splits = engine.state.batch[self.split_key]
        splits = [splits] if isinstance(splits, str) else list(splits)
        keep = ("bones_found", "bone_features", "layout", "logits", "mean_mutual_information_in_bones", "confidence")
        for res, split in zip(results, splits):
            self.results.append({k: res.get(k) for k in keep})
            self.splits.append(str(split))

    def fit(self, engine: Engine | None = None) -> dict:
        """Fit, save and return the fit record."""
        from monai_osteo.engines.hand_osteo.gates import fit_screening_gates, reference_layouts

        refs = self.references if self.references is not None else reference_layouts(self.datalist,
                                                                                      self.reference_splits)
        gates, report = fit_screening_gates(self.results, self.splits, refs, self.fit_split, self.calibration_split,
                                            self.rate)
        gates.save(self.gates_file)
        atomic_write_json(self.report_file, _finite({"gates_file": self.gates_file.name,
                                                     "thresholds": gates.thresholds, **report}))
        logger.info("screening gates saved to %s", self.gates_file)
        return report


def _finite(obj):
    """The object with non-finite floats as None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj
