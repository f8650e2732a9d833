"""stratified_label_fraction: nested across fractions, ceil per stratum, every class kept, seeded, multi-label."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from monai_osteo.data.fractions import stratified_label_fraction

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 1.0)
# ISIC-2017-like imbalance at 1/10 scale (37 melanoma, 25 SK, 137 nevi) plus a 2-item class, shuffled
LABELS = np.random.default_rng(0).permutation([0] * 37 + [1] * 25 + [2] * 137 + [3] * 2).tolist()


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_nested_across_fractions(seed):
    subsets = [set(stratified_label_fraction(LABELS, f, seed)) for f in FRACTIONS]
    for small, large in zip(subsets, subsets[1:]):
        assert small < large
    assert subsets[-1] == set(range(len(LABELS)))


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_stratum_sizes_are_ceil_and_sorted(fraction):
    idx = stratified_label_fraction(LABELS, fraction)
    assert idx == sorted(idx) and len(idx) == len(set(idx))
    got = Counter(LABELS[i] for i in idx)
    for c, n_c in Counter(LABELS).items():
        assert got[c] == math.ceil(round(fraction * n_c, 9)) >= 1  # 0.7 * 10 = 7.000000000000001 -> 7
    assert got[3] == 1 if fraction <= 0.5 else got[3] == 2  # every class present, even the 2-item one


def test_float_rounding_does_not_add_an_item():
    assert len(stratified_label_fraction([0] * 10, 0.7)) == 7
    assert len(stratified_label_fraction([0] * 10, 0.3)) == 3


def test_seed_changes_subset_and_is_reproducible():
    a = stratified_label_fraction(LABELS, 0.3, seed=0)
    assert a == stratified_label_fraction(LABELS, 0.3, seed=0)
    assert a != stratified_label_fraction(LABELS, 0.3, seed=1)
    # labels as numpy ints, a tensor or a numpy array give the same strata
    assert a == stratified_label_fraction(np.asarray(LABELS), 0.3)
    assert a == stratified_label_fraction(torch.tensor(LABELS), 0.3)


def test_multi_label_stratifies_by_combination():
    rng = np.random.default_rng(1)
    combos = [(1, 0, 0), (0, 1, 1), (1, 1, 0), (0, 0, 0)]
    labels = [list(combos[k]) for k in rng.choice(4, size=60, p=[0.5, 0.3, 0.15, 0.05])]
    for fraction in (0.1, 0.5):
        idx = stratified_label_fraction(labels, fraction, seed=2)
        got = Counter(tuple(labels[i]) for i in idx)
        for combo, n_c in Counter(tuple(x) for x in labels).items():
            assert got[combo] == math.ceil(round(fraction * n_c, 9))
    as_arrays = stratified_label_fraction(np.asarray(labels, dtype=np.float32), 0.5, seed=2)
    assert as_arrays == stratified_label_fraction(labels, 0.5, seed=2)
    assert set(stratified_label_fraction(labels, 0.1, 2)) < set(stratified_label_fraction(labels, 0.3, 2))


def test_unstratified():
    idx = stratified_label_fraction(None, 0.25, seed=3, n=10)
    assert len(idx) == 3 and idx == stratified_label_fraction([None] * 10, 0.25, seed=3)
    assert stratified_label_fraction(None, 1.0, n=10) == list(range(10))
    assert stratified_label_fraction(None, 0.01, n=10) != [] and stratified_label_fraction(None, 0.5, n=0) == []
    assert set(stratified_label_fraction(None, 0.3, n=50)) < set(stratified_label_fraction(None, 0.5, n=50))


def test_errors():
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
            stratified_label_fraction(LABELS, bad)
    with pytest.raises(ValueError, match="n must be the number of items"):
        stratified_label_fraction(None, 0.5)
    with pytest.raises(ValueError, match="n must equal len"):
        stratified_label_fraction([0, 1], 0.5, n=3)
