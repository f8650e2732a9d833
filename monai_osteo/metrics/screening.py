"""Screening metrics for the positive label, as the hand paper reports them (precision, recall, F1, AUC, accuracy), plus
sensitivity and specificity as the vertebral CT paper reports them (ACC, SEN, SPE, F1; its §3.1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

__all__ = ["screening_metrics", "best_threshold"]


def screening_metrics(labels: Sequence[int], probs: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """Metrics of the positive class (1) for scores ``probs`` thresholded at ``threshold``.

    Keys: ``precision``, ``recall``, ``f1``, ``auc``, ``accuracy``, ``n``, ``positives``, ``sensitivity`` (the
    recall, TP / (TP + FN), under the name the vertebral CT paper uses) and ``specificity`` (TN / (TN + FP)).
    AUC is NaN when only one class is present (it is undefined, not 0.5); specificity is NaN when there is no
    negative (0 / 0), whereas precision, recall/sensitivity and F1 keep scikit-learn's ``zero_division=0``.
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    if y.shape != p.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels and probs must be non-empty 1-D sequences of one length, got {y.shape}, {p.shape}.")
    pred = (p >= threshold).astype(int)
    tn, fp, _, _ = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    recall = float(recall_score(y, pred, zero_division=0))
    return {
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": recall,
        "f1": float(f1_score(y, pred, zero_division=0)),
        "auc": float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan"),
        "accuracy": float(accuracy_score(y, pred)),
        "n": int(len(y)),
        "positives": int(y.sum()),
        "sensitivity": recall,
        "specificity": float(tn / (tn + fp)) if tn + fp > 0 else float("nan"),
    }


def best_threshold(labels: Sequence[int], probs: Sequence[float]) -> float:
    """Threshold on ``probs`` that maximises macro-F1 (the paper's model-selection criterion)."""
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    candidates = np.unique(p)
    scores = [f1_score(y, (p >= t).astype(int), average="macro", zero_division=0) for t in candidates]
    return float(candidates[int(np.argmax(scores))])
