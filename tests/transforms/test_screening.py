"""Screening post-processing: the subject decision is Eq. 10 (oracle: aggregate_subjects), QC as the metrics say."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monai_osteo.metrics import aggregate_subjects, screening_qc_flags
from monai_osteo.transforms.screening import ScreeningDecisiond, ScreeningQCd


def _result(probs, found=("ulna", "radius", "M1", "M2", "M3", "M4", "M5"), confidence=0.95, area=0.1):
    return {"class_probabilities": np.asarray(probs, dtype=float).reshape(-1, 2), "bones_found": list(found),
            "confidence": confidence, "bone_area_fraction": area}


def test_decision_is_the_mean_of_the_bones_eq10():
    rng = np.random.default_rng(0)
    p1 = rng.random(7)
    probs = np.stack([1 - p1, p1], 1)
    out = ScreeningDecisiond("pred")({"pred": _result(probs)})["pred"]
    oracle = aggregate_subjects([{"subject_id": "s", "bone": i, "probs": p} for i, p in enumerate(probs)])[0]
    assert abs(out["probability"] - oracle["probability"]) < 1e-12 and out["decision"] == oracle["decision"]
    assert out["decision_name"] == ("osteoporosis" if oracle["decision"] else "no osteoporosis")


def test_threshold_and_batches_and_no_bone():
    batch = {"pred": [_result([[0.4, 0.6]]), _result(np.zeros((0, 2)), found=())]}
    out = ScreeningDecisiond("pred", threshold=0.7)(batch)["pred"]
    assert out[0]["decision"] == 0 and out[0]["threshold"] == 0.7
    assert out[1]["decision"] == -1 and math.isnan(out[1]["probability"])
    assert ScreeningDecisiond("pred", threshold=0.5)({"pred": _result([[0.4, 0.6]])})["pred"]["decision"] == 1
    with pytest.raises(ValueError, match="threshold"):
        ScreeningDecisiond("pred", threshold=1.5)


def test_qc_flags_are_the_metric_functions():
    res = _result([[0.5, 0.5]], found=("ulna", "radius", "M2"), confidence=0.5, area=0.7)
    out = ScreeningQCd("pred", min_confidence=0.8, min_bones_for_hand=4, area_range=(0.005, 0.6))({"pred": res})
    flags = screening_qc_flags(["ulna", "radius", "M2"], 0.5, 0.7, expected_bones=7, min_confidence=0.8,
                               min_bones_for_hand=4, area_range=(0.005, 0.6))
    assert out["pred"]["qc_flags"] == flags == ["missing_bones", "low_segmentation_confidence", "not_a_hand_radiograph"]
    assert out["pred"]["bones_missing"] == ["M1", "M3", "M4", "M5"] and len(out["pred"]["qc_messages"]) == 3
    ok = ScreeningQCd("pred")({"pred": _result([[0.5, 0.5]] * 7)})["pred"]
    assert ok["qc_flags"] == [] and ok["bones_missing"] == []
