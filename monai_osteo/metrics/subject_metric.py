"""Subject-level ignite metrics for MONAI evaluators: macro-F1 (the hand paper's model-selection criterion) and AUC."""

from __future__ import annotations

from collections.abc import Callable

import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from sklearn.metrics import roc_auc_score

from monai_osteo.metrics.subject import aggregate_subjects, subject_macro_f1

__all__ = ["SubjectAUC", "SubjectMacroF1", "subject_key_metric"]


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
            raise ValueError(f"{type(self).__name__} needs the subject ids in the batch under {self.subject_key!r} "
                             "(a dict batch: build the evaluator with decollate=False).")
        self.update((logits, labels, batch[self.subject_key]))

    def update(self, output) -> None:
        logits, labels, subjects = output
        probs = torch.softmax(torch.as_tensor(logits).detach().float(), 1).cpu().numpy()
        labels = torch.as_tensor(labels).reshape(-1).tolist()
        for p, y, s in zip(probs, labels, subjects):
            self._records.append({"subject_id": str(s), "bone": len(self._records), "probs": p, "label": int(y)})

    def compute(self) -> float:
        if not self._records:
            raise ValueError(f"{type(self).__name__} must have at least one example before it can be computed.")
        return self._score(aggregate_subjects(self._records))

    def _score(self, subjects: list[dict]) -> float:
        return subject_macro_f1(subjects)


class SubjectAUC(SubjectMacroF1):
    """ROC AUC of the subjects' mean bone probability of class 1 (Eq. 10's score before the argmax).

    Same inputs as :class:`SubjectMacroF1`. A threshold-free selection criterion: on a few dozen validation subjects
    macro-F1 moves in steps of one subject crossing 0.5 and favours early, under-fitted probes (quick preset,
    ``probe_selection: "auc"``). scikit-learn computes the AUC; it is undefined (``ValueError``) when the
    validation subjects hold one class only.
    """

    def _score(self, subjects: list[dict]) -> float:
        labels = [int(s["label"]) for s in subjects]
        if len(set(labels)) < 2:
            raise ValueError(f"SubjectAUC needs both classes among the subjects, got only label {labels[0]} "
                             f"({len(labels)} subjects): put positive and negative subjects in the validation split.")
        return float(roc_auc_score(labels, [s["probability"] for s in subjects]))


_SELECTION = {"f1": ("val_subject_f1", SubjectMacroF1), "auc": ("val_subject_auc", SubjectAUC)}


def subject_key_metric(selection: str = "f1", subject_key: str = "subject_id") -> dict[str, Metric]:
    """``{name: metric}`` for an evaluator's ``key_val_metric``: ``"f1"`` (the paper) or ``"auc"``."""
    if selection not in _SELECTION:
        raise ValueError(f"model selection must be one of {sorted(_SELECTION)}, got {selection!r}.")
    name, cls = _SELECTION[selection]
    return {name: cls(subject_key=subject_key)}
