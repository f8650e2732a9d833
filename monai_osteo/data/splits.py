"""Subject-wise, label-stratified train/validation/test splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SPLIT_NAMES", "subject_split"]

SPLIT_NAMES = ("training", "validation", "test")


def subject_split(
    subject_ids: Sequence[str],
    labels: Sequence[int] | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, str]:
    """Assign every subject to one of ``SPLIT_NAMES``, stratified by label when labels are given.

    Images of one subject always share a split (pass one id per image; repeated ids are grouped).

    Args:
        subject_ids: subject id of each image.
        labels: class of each image (must agree within a subject), or None for no stratification.
        fractions: training, validation and test fractions; they must sum to 1.
        seed: seed of the permutation.

    Returns:
        mapping subject id -> split name.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)!r}.")
    if labels is not None and len(labels) != len(subject_ids):
        raise ValueError(f"labels must have one entry per subject id, got {len(labels)} for {len(subject_ids)} ids.")
    strata: dict[object, list[str]] = {}
    subject_label: dict[str, object] = {}
    for i, sid in enumerate(subject_ids):
        lab = None if labels is None else int(labels[i])
        if sid in subject_label:
            if subject_label[sid] != lab:
                raise ValueError(f"subject {sid!r} has images with different labels ({subject_label[sid]} and {lab}).")
            continue
        subject_label[sid] = lab
        strata.setdefault(lab, []).append(sid)
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for key in sorted(strata, key=lambda k: (k is None, k)):
        ids = sorted(strata[key])
        order = [ids[i] for i in rng.permutation(len(ids))]
        n_val, n_test = int(round(fractions[1] * len(ids))), int(round(fractions[2] * len(ids)))
        for j, sid in enumerate(order):
            out[sid] = "validation" if j < n_val else "test" if j < n_val + n_test else "training"
    return out
