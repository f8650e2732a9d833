"""Writer of the per-image class probabilities of a classification inference run (``predictions.json``).

Used by the s4mi bundle's ``inference_classification.json``; inputs that could not be read are listed beside the
predictions, and nothing names an input file unless the user keeps the names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from monai_osteo.io import atomic_write_json

__all__ = ["ClassProbabilityWriter"]

logger = logging.getLogger(__name__)


class ClassProbabilityWriter:
    """Collect the class probabilities of each image during an evaluator run; at its end write ``predictions.json``.

    Per image (in input order): ``id`` (the batch's ``name_key``: an :func:`~monai_osteo.bundle.output_id` unless the
    user keeps the input names), with ``keep_names`` the ``input`` path, ``probabilities`` by class name (the
    sigmoid of each logit: S4MI/CASS train every output with a sigmoid focal loss, for multi-class data too),
    ``labels`` (the class names with probability > ``threshold``, CASS-literal), and for multi-class data ``class``
    (the argmax, ``class_key`` of the output). Inputs that could not be read (``failed``) are listed with their
    reason. The file is written to a temporary name and renamed (:func:`~monai_osteo.io.atomic_write_json`).

    Args:
        output_dir: where ``predictions.json`` goes.
        class_names: one name per network output.
        failed: the unreadable inputs (``check_images(...)["failed"]``).
        multilabel: the cohort is multi-label (no ``class`` entry).
        threshold: a class is predicted when its probability is strictly above it.
        keep_names: record each input path.
        filename: the file name.
        pred_key, class_key, name_key, source_key: output/batch keys (``pred``: (K,) probabilities per item;
            ``class_key``: the argmax index, absent for multi-label data).
    """

    def __init__(self, output_dir: str | os.PathLike, class_names: Sequence[str], failed: Sequence[dict] = (),
                 multilabel: bool = False, threshold: float = 0.5, keep_names: bool = False,
                 filename: str = "predictions.json", pred_key: str = "pred", class_key: str = "pred_class",
                 name_key: str = "name", source_key: str = "source") -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}.")
        self.output_dir, self.class_names, self.failed = Path(output_dir), [str(c) for c in class_names], list(failed)
        self.multilabel, self.threshold, self.keep_names = multilabel, float(threshold), keep_names
        self.filename = filename
        self.pred_key, self.class_key, self.name_key, self.source_key = pred_key, class_key, name_key, source_key
        self.records: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write_summary)

    def _start(self, engine: Engine | None = None) -> None:
        self.records = []

    def __call__(self, engine: Engine) -> None:
        from monai.data import decollate_batch

        batch, output = engine.state.batch, engine.state.output
        batch = decollate_batch(batch) if isinstance(batch, dict) else batch
        output = decollate_batch(output) if isinstance(output, dict) else output
        for item, out in zip(batch, output):
            self.add(str(item[self.name_key]), out[self.pred_key], out.get(self.class_key), item.get(self.source_key))

    def add(self, name: str, prob: torch.Tensor, argmax=None, source: str | os.PathLike | None = None) -> dict:
        """Record (and return) the entry of one image: ``prob`` is its (K,) class probabilities."""
        p = torch.as_tensor(prob).detach().float().cpu().reshape(-1).tolist()
        if len(p) != len(self.class_names):
            raise ValueError(f"pred must hold {len(self.class_names)} class probabilities (one per class name), got "
                             f"{len(p)}: check num_classes and class_names.")
        entry: dict = {"id": name}
        if self.keep_names and source is not None:
            entry["input"] = str(source)
        entry["probabilities"] = dict(zip(self.class_names, p))
        entry["labels"] = [c for c, v in zip(self.class_names, p) if v > self.threshold]
        if not self.multilabel:
            k = max(range(len(p)), key=p.__getitem__) if argmax is None else int(torch.as_tensor(argmax).reshape(-1)[0])
            entry["class"] = self.class_names[k]
        self.records.append(entry)
        return entry

    def write_summary(self, engine: Engine | None = None) -> Path:
        """``predictions.json``: ``class_names``, ``multilabel``, ``threshold``, ``count``, ``failed_count``,
        ``images`` and ``failed``."""
        summary = {"class_names": self.class_names, "multilabel": self.multilabel, "threshold": self.threshold,
                   "count": len(self.records), "failed_count": len(self.failed), "images": self.records,
                   "failed": self.failed}
        path = atomic_write_json(self.output_dir / self.filename, summary)
        logger.info("classified %d image(s), %d unreadable; predictions in %s", len(self.records), len(self.failed),
                    path)
        return path
