"""Subject aggregation (Eq. 10) against a hand-computed oracle; subject macro-F1 against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from monai_osteo.metrics.subject import aggregate_subjects, subject_macro_f1
from tests.utils import assert_allclose


def _records():
    # s1: two bones lean osteoporotic, one is strongly normal -> majority vote says 1, the mean (Eq. 10) says 0.
    return [
        {"subject_id": "s1", "bone": "M2", "probs": [0.45, 0.55], "label": 0, "split": "test"},
        {"subject_id": "s2", "bone": "radius", "probs": [0.2, 0.8], "label": 1, "split": "validation"},
        {"subject_id": "s1", "bone": "M3", "probs": [0.45, 0.55], "label": 0, "split": "test"},
        {"subject_id": "s1", "bone": "ulna", "probs": [0.9, 0.1], "label": 0, "split": "test"},
        {"subject_id": "s2", "bone": "M1", "probs": [0.4, 0.6], "label": 1, "split": "validation"},
        {"subject_id": "s3", "bone": "M5", "probs": np.array([0.3, 0.7]), "label": 1, "split": "training"},
    ]


def test_aggregate_subjects_matches_hand_oracle():
    out = aggregate_subjects(_records())
    assert [s["subject_id"] for s in out] == ["s1", "s2", "s3"]  # first-seen order
    s1, s2, s3 = out
    assert_allclose(s1["probs"], [(0.45 + 0.45 + 0.9) / 3, (0.55 + 0.55 + 0.1) / 3], rtol=1e-12)
    assert s1["probability"] == pytest.approx(0.4)
    assert s1["decision"] == 0  # argmax of the mean, not a majority vote of the bones (which would say 1)
    assert s1["bones"] == 3
    assert s1["bone_probabilities"] == pytest.approx({"M2": 0.55, "M3": 0.55, "ulna": 0.1})
    assert (s1["label"], s1["split"]) == (0, "test")

    assert_allclose(s2["probs"], [0.3, 0.7], rtol=1e-12)
    assert s2["probability"] == pytest.approx(0.7) and s2["decision"] == 1 and s2["bones"] == 2
    assert s2["bone_probabilities"] == pytest.approx({"radius": 0.8, "M1": 0.6})
    assert (s2["label"], s2["split"]) == (1, "validation")

    assert s3["probs"] == pytest.approx([0.3, 0.7]) and s3["decision"] == 1 and s3["bones"] == 1
    assert (s3["label"], s3["split"]) == (1, "training")


def test_aggregate_subjects_multiclass_decision_is_argmax_of_mean():
    recs = [{"subject_id": 7, "bone": "a", "probs": [0.5, 0.1, 0.4]},
            {"subject_id": 7, "bone": "b", "probs": [0.1, 0.4, 0.5]}]
    (s,) = aggregate_subjects(recs)
    assert s["subject_id"] == "7"  # ids are normalised to str
    assert s["probs"] == pytest.approx([0.3, 0.25, 0.45])
    assert s["decision"] == 2 and s["probability"] == pytest.approx(0.25)
    assert "label" not in s and "split" not in s  # only propagated when given


def test_aggregate_subjects_outputs_are_plain_python():
    (s,) = aggregate_subjects([{"subject_id": "a", "bone": "M1", "probs": np.array([0.25, 0.75], np.float32)}])
    assert isinstance(s["probs"], list) and isinstance(s["probability"], float) and isinstance(s["decision"], int)


def test_aggregate_subjects_empty():
    assert aggregate_subjects([]) == []


@pytest.mark.parametrize("bone_probs", [[0.7, 0.3, 0.2], [[[0.4], [0.6]]], [[1.0]], [[1.0], [0.0]]],
                         ids=["scalar-per-bone", "matrix-per-bone", "one-class", "one-class-two-bones"])
def test_aggregate_subjects_bad_shapes_raise(bone_probs):
    """Per bone, probs must be a (C >= 2,) vector: a scalar, a matrix or a single class is refused."""
    recs = [{"subject_id": "s", "bone": f"b{i}", "probs": p} for i, p in enumerate(bone_probs)]
    with pytest.raises(ValueError, match="subject s: probs must be class probabilities"):
        aggregate_subjects(recs)


def test_aggregate_subjects_ragged_class_counts_raise():
    recs = [{"subject_id": "s", "bone": "M1", "probs": [0.5, 0.5]},
            {"subject_id": "s", "bone": "M2", "probs": [0.2, 0.3, 0.5]}]
    with pytest.raises(ValueError):
        aggregate_subjects(recs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subject_macro_f1_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 40)
    d = rng.integers(0, 2, 40)
    subjects = [{"subject_id": str(i), "label": int(a), "decision": int(b)} for i, (a, b) in enumerate(zip(y, d))]
    assert subject_macro_f1(subjects) == pytest.approx(f1_score(y, d, average="macro"), abs=1e-12)


def test_subject_macro_f1_end_to_end_and_degenerate():
    subjects = aggregate_subjects(_records())  # decisions 0, 1, 1 vs labels 0, 1, 1
    assert subject_macro_f1(subjects) == pytest.approx(1.0)
    # one class only predicted: sklearn's zero_division=0 convention, no warning-driven crash
    flat = [{"label": 1, "decision": 0}, {"label": 0, "decision": 0}]
    assert subject_macro_f1(iter(flat)) == pytest.approx(f1_score([1, 0], [0, 0], average="macro", zero_division=0))
