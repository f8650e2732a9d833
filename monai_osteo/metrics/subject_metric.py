"""Subject macro-F1 as an ignite metric: the hand paper's model-selection criterion inside a MONAI evaluator."""

from __future__ import annotations

from collections.abc import Callable

import torch
from ignite.engine import Engine
from ignite.metrics import Metric

from monai_osteo.metrics.subject import aggregate_subjects, subject_macro_f1

__all__ = ["SubjectMacroF1"]


class SubjectMacroF1(Metric):
    """Macro-F1 of subject decisions, a subject's decision being the argmax of its bones' mean probability (Eq. 10).

    Per iteration it takes the bone logits (B, C) and labels (B,) from the engine output, and the subject ids from
    the batch (``subject_key``: the ids are not model outputs, so they are read from ``engine.state.batch``; use
    the evaluator with ``decollate=False``). scikit-learn computes the F1; no ignite/MONAI metric groups
    predictions by subject.

    Args:
        subject_key: batch key of the subject ids.
        output_transform: engine output -> (logits, labels); default ``(output["pred"], output["label"])``.
        device: as ``ignite.metrics.Metric``.

    - [0] hand_xray_osteoporosis_journal, Eq. 10 and §"Classification" (model selection on subject macro-F1).
    """

    def __init__(self, subject_key: str = "subject_id",
                 output_transform: Callable = lambda o: (o["pred"], o["label"]), device="cpu") -> None:
        self.subject_key = subject_key
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._records: list[dict] = []

    def iteration_completed(self, engine: Engine) -> None:
        logits, labels = self._output_transform(engine.state.output)
        batch = engine.state.batch
        if not isinstance(batch, dict) or self.subject_key not in batch:
            raise ValueError(f"SubjectMacroF1 needs the subject ids in the batch under {self.subject_key!r} (a dict "
                             "batch: build the evaluator with decollate=False).")
        self.update((logits, labels, batch[self.subject_key]))

    def update(self, output) -> None:
        logits, labels, subjects = output
        probs = torch.softmax(torch.as_tensor(logits).detach().float(), 1).cpu().numpy()
        labels = torch.as_tensor(labels).reshape(-1).tolist()
        for p, y, s in zip(probs, labels, subjects):
            self._records.append({"subject_id": str(s), "bone": len(self._records), "probs": p, "label": int(y)})

    def compute(self) -> float:
        if not self._records:
            raise ValueError("SubjectMacroF1 must have at least one example before it can be computed.")
        return subject_macro_f1(aggregate_subjects(self._records))
