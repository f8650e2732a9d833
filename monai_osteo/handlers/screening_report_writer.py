"""Handler of the hand screening workflow: one JSON (+ PNG) report per radiograph and a summary."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_osteo.bundle.paths import output_id
from monai_osteo.io import atomic_write_json

__all__ = ["ScreeningReportWriter", "screening_report"]

logger = logging.getLogger("monai_osteo.hand_osteo")
REPORT_KEYS = ("decision", "decision_name", "probability", "threshold", "bone_probabilities", "bones_found",
               "bones_missing", "qc_flags", "qc_messages", "gates")


def screening_report(res: dict, rid: str, seconds: float) -> dict:
    """The JSON report of one screened radiograph (a post-processed ``HandScreeningInferer`` result)."""
    report = {"id": rid, **{k: res[k] for k in REPORT_KEYS if k in res},
              "segmentation": {k: res[k] for k in ("confidence", "bone_area_fraction", "mean_entropy_in_bones",
                                                   "mean_mutual_information_in_bones")},
              "seconds": round(seconds, 3)}
    if "probability_ungated" in res:
        report["probability_ungated"] = res["probability_ungated"]
    return report


class ScreeningReportWriter:
    """Write ``<id>.json`` (and ``<id>.png``) per screened radiograph and ``summary.json`` at the end.

    Output ids are ``r<index>_<sha256(path)[:8]>`` (:func:`~monai_osteo.bundle.output_id`): no patient or file name
    appears in an output name, and the JSON keeps the source path only with ``record_source``. Inputs that could
    not be read (``failures``, from :func:`~monai_osteo.bundle.check_radiographs`) are listed in the summary.

    Args:
        output_dir: where to write.
        failures: the unreadable inputs, reported in ``summary.json``.
        report_png: also write the PNG report.
        record_source: keep the input path in the JSON.
        pred_key, image_key, index_key, source_key: output/batch keys (``source_key`` holds the input path).
    """

    def __init__(self, output_dir: str | os.PathLike, failures: Sequence[dict] = (), report_png: bool = True,
                 record_source: bool = False, pred_key: str = "pred", image_key: str = "image",
                 index_key: str = "index", source_key: str = "source") -> None:
        self.output_dir, self.failures = Path(output_dir), list(failures)
        self.report_png, self.record_source = report_png, record_source
        self.pred_key, self.image_key, self.index_key, self.source_key = pred_key, image_key, index_key, source_key
        self.screened: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_STARTED, self._tick)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write_summary)

    def _start(self, engine: Engine) -> None:
        self.screened = []
        self.output_dir.mkdir(parents=True, exist_ok=True)

    def _tick(self, engine: Engine) -> None:
        self._t0 = time.perf_counter()

    def __call__(self, engine: Engine) -> None:
        from monai_osteo.report import save_screening_report_png

        batch, output = engine.state.batch, engine.state.output
        results = output[self.pred_key]
        seconds = (time.perf_counter() - getattr(self, "_t0", time.perf_counter())) / max(len(results), 1)
        for i, res in enumerate(results):
            index = int(torch.as_tensor(batch[self.index_key]).reshape(-1)[i])
            source = str(batch[self.source_key][i])
            rid = output_id(source, index)
            report = screening_report(res, rid, seconds)
            if self.record_source:
                report["source"] = source
            atomic_write_json(self.output_dir / f"{rid}.json", report)
            if self.report_png:
                image = np.asarray(torch.as_tensor(batch[self.image_key][i]).cpu())[0]
                p = res["probability"]
                decision = "no decision" if res["decision"] == -1 else res["decision_name"]  # reasons: QC lines
                save_screening_report_png(self.output_dir / f"{rid}.png", image, res["labels"],
                                          res["bone_probabilities"], decision,
                                          None if np.isnan(p) else p, threshold=res["threshold"],
                                          uncertainty=res["uncertainty"], qc_flags=res["qc_messages"], title=rid)
            self.screened.append({"id": rid, "decision": res["decision"], "probability": res["probability"],
                                  "qc_flags": res["qc_flags"]})

    def write_summary(self, engine: Engine | None = None) -> Path:
        summary = {"screened": self.screened, "failures": self.failures, "count": len(self.screened),
                   "failed": len(self.failures)}
        path = atomic_write_json(self.output_dir / "summary.json", summary)
        logger.info("screened %d radiograph(s), %d unreadable; reports in %s", len(self.screened), len(self.failures),
                    self.output_dir)
        return path
