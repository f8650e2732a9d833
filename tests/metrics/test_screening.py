"""Screening metrics against scikit-learn: specificity from the confusion matrix, sensitivity = recall, the
existing keys unchanged, NaN for undefined AUC/specificity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from monai_osteo.metrics import screening_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_screening_metrics_match_sklearn(seed, threshold):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 50)
    p = np.clip(0.35 * y + rng.uniform(0, 0.65, 50), 0, 1)
    m = screening_metrics(y.tolist(), p.tolist(), threshold)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert m["specificity"] == pytest.approx(tn / (tn + fp), abs=1e-15)
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn), abs=1e-15)
    assert m["sensitivity"] == m["recall"] == pytest.approx(recall_score(y, pred), abs=1e-15)
    assert m["precision"] == pytest.approx(precision_score(y, pred, zero_division=0), abs=1e-15)
    assert m["f1"] == pytest.approx(f1_score(y, pred, zero_division=0), abs=1e-15)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-15)
    assert m["accuracy"] == pytest.approx((tp + tn) / len(y), abs=1e-15)
    assert (m["n"], m["positives"]) == (50, int(y.sum()))


def test_screening_metrics_keys_kept():
    m = screening_metrics([0, 1, 1, 0], [0.2, 0.9, 0.4, 0.6])
    assert set(m) == {"precision", "recall", "f1", "auc", "accuracy", "n", "positives", "sensitivity", "specificity"}
    assert m["specificity"] == pytest.approx(0.5) and m["sensitivity"] == pytest.approx(0.5)


def test_screening_metrics_one_class():
    only_pos = screening_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert math.isnan(only_pos["specificity"]) and math.isnan(only_pos["auc"])  # no negatives: 0 / 0
    assert only_pos["sensitivity"] == pytest.approx(2 / 3)
    only_neg = screening_metrics([0, 0, 0, 0], [0.9, 0.2, 0.1, 0.3])
    assert only_neg["specificity"] == pytest.approx(0.75) and math.isnan(only_neg["auc"])
    assert only_neg["sensitivity"] == 0.0 == only_neg["recall"]  # sklearn's zero_division=0, as before


def test_screening_metrics_errors():
    with pytest.raises(ValueError, match="non-empty 1-D sequences of one length"):
        screening_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="non-empty 1-D sequences of one length"):
        screening_metrics([], [])
