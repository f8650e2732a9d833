"""Median-frequency class weights against hand counts and the S4MI code's ``reverse_weight(calculate_weights)``."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
from PIL import Image

from monai_osteo.losses.class_weights import median_frequency_weights
from tests.utils import assert_allclose

# 3 of 6 foreground pixels; no foreground
A = np.array([[0, 0, 255], [0, 255, 255]], dtype=np.uint8)
B = np.zeros((2, 3), dtype=np.uint8)


def _s4mi_reference(masks: list[np.ndarray]) -> list[float]:
    """S4MI ``utils/losses.py``: ``reverse_weight(calculate_weights(folder))`` on in-memory 0/255 masks."""
    labels_dict: dict = {}
    for im in masks:
        labs, cnts = np.unique(np.around(im / 255), return_counts=True)
        for lab, cnt in zip(labs, cnts):
            labels_dict[lab] = labels_dict.get(lab, 0) + cnt
    total = float(sum(labels_dict.values()))
    w = {k: v / total for k, v in labels_dict.items()}
    value = statistics.median(list(w.values()))
    return [value / (w[k] + 1e-10) for k in range(len(w))]


def test_binary_hand_count():
    # present: bg 9 / 12 px, fg 3 / 6 px (only A has foreground) -> freq (0.75, 0.5), median 0.625
    w = median_frequency_weights([A, B], num_classes=2)
    assert w.dtype == torch.float32 and w.shape == (2,)
    assert_allclose(w, [0.625 / 0.75, 0.625 / 0.5], rtol=1e-6)
    # global (S4MI code): bg 9 / 12, fg 3 / 12 -> freq (0.75, 0.25), median 0.5
    g = median_frequency_weights([A, B], num_classes=2, frequency="global")
    assert_allclose(g, [0.5 / 0.75, 0.5 / 0.25], rtol=1e-6)
    assert_allclose(g, _s4mi_reference([A, B]), rtol=1e-6)
    # every mask contains both classes: the two definitions agree
    assert_allclose(median_frequency_weights([A, A.T], 2), median_frequency_weights([A, A.T], 2, "global"), rtol=1e-6)


def test_multiclass_hand_count():
    m1 = np.array([[0, 0, 0, 1], [1, 1, 2, 0]])  # bg 4, c1 3, c2 1 of 8
    m2 = np.array([[0, 0, 0, 0], [0, 0, 1, 1]])  # bg 6, c1 2 of 8; no class 2
    w = median_frequency_weights([m1, torch.as_tensor(m2)], num_classes=3)
    freq = np.array([10 / 16, 5 / 16, 1 / 8])
    assert_allclose(w, np.median(freq) / freq, rtol=1e-6)
    assert float(w[1]) == pytest.approx(1.0)


def test_png_paths_match_arrays(tmp_path):
    paths = []
    for i, m in enumerate((A, B)):
        paths.append(tmp_path / f"mask{i}.png")
        Image.fromarray(m).save(paths[-1])
    Image.fromarray(np.stack([A] * 3, -1)).save(tmp_path / "rgb.png")
    assert_allclose(median_frequency_weights(paths, 2), median_frequency_weights([A, B], 2))
    assert_allclose(median_frequency_weights([str(tmp_path / "rgb.png"), B], 2), median_frequency_weights([A, B], 2))


def test_errors():
    with pytest.raises(ValueError, match=r"classes \[1\] never appear"):
        median_frequency_weights([B], num_classes=2)
    with pytest.raises(ValueError, match=r"integers in \[0, 3\)"):
        median_frequency_weights([A], num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        median_frequency_weights([A], num_classes=1)
    with pytest.raises(ValueError, match="frequency"):
        median_frequency_weights([A], num_classes=2, frequency="median")
    with pytest.raises(ValueError, match="at least one mask"):
        median_frequency_weights([], num_classes=2)
