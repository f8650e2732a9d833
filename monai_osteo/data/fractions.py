"""Seeded, class-stratified, nested label-fraction subsets of a training set (S4MI "x% label fractions").

S4MI's code labels the *first* ``round(x·N)`` training items (directory order); the spec (wave2 §4.1) decides on a
seeded random subset, stratified by class where classes exist and nested across fractions, so that the
10% ⊂ 30% ⊂ 50% ⊂ 70% ⊂ 100% runs of one seed differ only by the added labels. scikit-learn's
``train_test_split(stratify=...)`` draws a fresh split per size, so its subsets are not nested; hence this function.

- [0] Singh et al., 2024, Shifting to machine supervision (S4MI), §Data-preprocessing ("x% label fractions").
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["stratified_label_fraction"]


def _stratum(label) -> Hashable:
    """Class int, tuple of a multi-hot vector (its label combination), or None (no class)."""
    if label is None:
        return None
    arr = np.asarray(label.detach().cpu() if hasattr(label, "detach") else label)
    if arr.ndim == 0:
        return int(arr)
    return tuple(int(v) for v in arr.reshape(-1))


def stratified_label_fraction(labels: Sequence | None, fraction: float, seed: int = 0,
                              n: int | None = None) -> list[int]:
    """Sorted indices of a seeded subset of ``fraction`` of the items, per stratum, nested across fractions.

    Each stratum (class, multi-label combination, or all items when there are no labels) has one permutation fixed
    by ``seed`` and the stratum key (stable across calls and processes); the subset keeps its first
    ``ceil(fraction * n_stratum)`` items, at least one per non-empty stratum. A larger fraction therefore extends a
    smaller one, and ``fraction=1`` returns every index.

    Args:
        labels: per training item, a class int (multi-class), a multi-hot sequence (multi-label: stratified by the
            label combination) or None (no class; those items form one stratum). ``None`` for no labels at all
            (then pass ``n``).
        fraction: fraction of labelled items to keep, in (0, 1].
        seed: seed of the permutations.
        n: number of items when ``labels`` is None; must equal ``len(labels)`` otherwise.

    Returns:
        Sorted indices into ``labels`` (datalist order).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    if labels is None:
        if n is None or n < 0:
            raise ValueError(f"n must be the number of items (>= 0) when labels is None, got {n!r}.")
        labels = [None] * int(n)
    elif n is not None and n != len(labels):
        raise ValueError(f"n must equal len(labels) = {len(labels)}, got {n!r}; pass one of them.")
    strata: dict[Hashable, list[int]] = {}
    for i, label in enumerate(labels):
        strata.setdefault(_stratum(label), []).append(i)
    keep: list[int] = []
    for key, members in strata.items():
        entropy = [int(seed), zlib.crc32(repr(key).encode())]
        perm = np.random.default_rng(np.random.SeedSequence(entropy)).permutation(len(members))
        k = min(len(members), max(1, math.ceil(fraction * len(members) - 1e-9)))
        keep.extend(members[j] for j in perm[:k])
    return sorted(keep)
