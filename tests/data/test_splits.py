from __future__ import annotations

import numpy as np
import pytest

from monai_osteo.data.splits import subject_split


def test_stratified_fractions_and_determinism():
    ids = [f"S{i:03d}" for i in range(100)]
    labels = [int(i < 30) for i in range(100)]
    split = subject_split(ids, labels, seed=0)
    assert split == subject_split(ids, labels, seed=0) and split != subject_split(ids, labels, seed=1)
    for lab, n in ((1, 30), (0, 70)):
        got = [split[s] for s, y in zip(ids, labels) if y == lab]
        assert got.count("validation") == round(0.1 * n) and got.count("test") == round(0.1 * n)


def test_images_of_one_subject_share_a_split():
    ids = [f"S{i // 2:03d}" for i in range(60)]  # two images per subject
    split = subject_split(ids, None, seed=2)
    assert len(split) == 30
    values = np.array([split[s] for s in ids])
    assert (values[::2] == values[1::2]).all()


def test_errors():
    with pytest.raises(ValueError, match="fractions"):
        subject_split(["a"], fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="different labels"):
        subject_split(["a", "a"], [0, 1])
    with pytest.raises(ValueError, match="one entry per subject"):
        subject_split(["a", "b"], [0])
