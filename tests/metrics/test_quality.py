"""QC flags fire exactly at their thresholds; segmentation confidence against a hand-built oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_osteo.data.phantoms.anatomy import BONE_LABELS
from monai_osteo.metrics import (
    QC_FLAGS,
    describe_qc_flags,
    missing_bone_names,
    screening_qc_flags,
    segmentation_confidence,
)
from tests.utils import assert_allclose

ALL = list(BONE_LABELS)


def test_clean_hand_has_no_flag():
    assert screening_qc_flags(ALL, 0.95, 0.2) == []
    assert screening_qc_flags(ALL + ["ulna"], 0.95, 0.2) == []  # duplicates count once


def test_missing_bones_boundary():
    assert screening_qc_flags(ALL[:7], 0.9, 0.2) == []
    assert screening_qc_flags(ALL[:6], 0.9, 0.2) == ["missing_bones"]
    assert screening_qc_flags(ALL[:6], 0.9, 0.2, expected_bones=6) == []
    assert missing_bone_names(["ulna", "M2", "M5"]) == ["radius", "M1", "M3", "M4"]
    assert missing_bone_names(ALL) == []


def test_confidence_boundary():
    assert screening_qc_flags(ALL, 0.8, 0.2) == []
    assert screening_qc_flags(ALL, np.nextafter(0.8, 0.0), 0.2) == ["low_segmentation_confidence"]
    assert screening_qc_flags(ALL, 0.5, 0.2, min_confidence=0.5) == []


def test_not_a_hand_boundary_on_bone_count():
    assert screening_qc_flags(ALL[:4], 0.9, 0.2) == ["missing_bones"]
    assert screening_qc_flags(ALL[:3], 0.9, 0.2) == ["missing_bones", "not_a_hand_radiograph"]
    assert screening_qc_flags([], 0.0, 0.0) == list(QC_FLAGS)  # all flags, in QC_FLAGS order


@pytest.mark.parametrize("area, flagged", [(0.005, False), (0.6, False), (np.nextafter(0.005, 0), True),
                                           (np.nextafter(0.6, 1), True), (0.0, True), (1.0, True)])
def test_not_a_hand_boundary_on_area(area, flagged):
    assert screening_qc_flags(ALL, 0.9, area) == (["not_a_hand_radiograph"] if flagged else [])


def test_flag_validation():
    with pytest.raises(ValueError, match="single string"):
        screening_qc_flags("ulna", 0.9, 0.2)
    with pytest.raises(ValueError, match="confidence must be"):
        screening_qc_flags(ALL, 1.2, 0.2)
    with pytest.raises(ValueError, match="bone_area_fraction must be"):
        screening_qc_flags(ALL, 0.9, float("nan"))
    with pytest.raises(ValueError, match="area_range must satisfy"):
        screening_qc_flags(ALL, 0.9, 0.2, area_range=(0.6, 0.1))
    with pytest.raises(ValueError, match="min_bones_for_hand"):
        screening_qc_flags(ALL, 0.9, 0.2, min_bones_for_hand=8)
    with pytest.raises(ValueError, match="expected_bones"):
        screening_qc_flags(ALL, 0.9, 0.2, expected_bones=0)


def test_describe_flags():
    text = describe_qc_flags(list(QC_FLAGS), missing=["M4", "M5"])
    assert len(text) == 3 and text[0] == "missing bones: M4, M5"
    assert "confidence" in text[1] and "hand radiograph" in text[2]
    assert describe_qc_flags(["missing_bones"]) == ["missing bones"]
    assert describe_qc_flags([]) == []
    with pytest.raises(ValueError, match="flags must be among"):
        describe_qc_flags(["blurry"])


def test_segmentation_confidence_oracle():
    # 3 classes on a 2x3 grid; bone pixels are where labels > 0
    prob = np.array([
        [[0.9, 0.1, 0.2], [0.6, 0.3, 0.0]],
        [[0.05, 0.7, 0.3], [0.2, 0.6, 0.1]],
        [[0.05, 0.2, 0.5], [0.2, 0.1, 0.9]],
    ])
    labels = prob.argmax(0)  # [[0, 1, 2], [0, 1, 2]]
    expected = np.mean([0.7, 0.5, 0.6, 0.9])
    assert_allclose(segmentation_confidence(prob, labels), expected, rtol=1e-12)
    t = torch.as_tensor(prob, dtype=torch.float32)
    assert_allclose(segmentation_confidence(t, torch.as_tensor(labels)), expected, rtol=1e-6)
    # a label map other than argmax: still the max class probability over its bone pixels
    assert_allclose(segmentation_confidence(prob, np.array([[1, 0, 0], [0, 0, 0]])), 0.9, rtol=1e-12)
    assert segmentation_confidence(prob, np.zeros((2, 3), int)) == 0.0


def test_segmentation_confidence_validation():
    prob = np.full((2, 4, 4), 0.5)
    with pytest.raises(ValueError, match=r"labels must have shape prob.shape\[1:\]"):
        segmentation_confidence(prob, np.ones((1, 4, 4), int))
    with pytest.raises(ValueError, match="floating-point"):
        segmentation_confidence(np.ones((2, 4, 4), int), np.ones((4, 4), int))
    with pytest.raises(ValueError, match="softmax"):
        segmentation_confidence(prob * 5, np.ones((4, 4), int))
    with pytest.raises(ValueError, match=r"shape \(C, \*spatial\)"):
        segmentation_confidence(np.ones(4), np.ones((), int))
