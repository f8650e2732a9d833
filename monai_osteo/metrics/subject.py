"""Subject-level decision of the hand paper (Eq. 10): mean class probability over the bones found."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from sklearn.metrics import f1_score

__all__ = ["aggregate_subjects", "subject_macro_f1"]


def aggregate_subjects(records: Iterable[Mapping]) -> list[dict]:
    """Group per-bone predictions by subject and average their class probabilities.

    Args:
        records: one mapping per bone patch with ``subject_id``, ``bone``, ``probs`` (class probabilities, class 1
            = osteoporosis) and optionally ``label`` (the subject's) and ``split``.

    Returns:
        One dict per subject (first-seen order): ``subject_id``, ``label`` (if given), ``split`` (if given),
        ``probs`` (mean over its bones), ``probability`` (of class 1), ``decision`` (argmax of the mean, Eq. 10),
        ``bone_probabilities`` {bone: probability of class 1}, ``bones`` (number averaged).

    - [0] hand_xray_osteoporosis_journal, Eq. 10.
    """
    groups: dict[str, list[Mapping]] = {}
    for r in records:
        groups.setdefault(str(r["subject_id"]), []).append(r)
    out = []
    for sid, rs in groups.items():
        probs = np.asarray([np.asarray(r["probs"], dtype=float) for r in rs])
        if probs.ndim != 2 or probs.shape[1] < 2:
            raise ValueError(f"subject {sid}: probs must be class probabilities (C >= 2) per bone, got {probs.shape}.")
        mean = probs.mean(0)
        item = {"subject_id": sid, "probs": mean.tolist(), "probability": float(mean[1]),
                "decision": int(np.argmax(mean)), "bones": len(rs),
                "bone_probabilities": {str(r["bone"]): float(p[1]) for r, p in zip(rs, probs)}}
        for key in ("label", "split"):
            if key in rs[0]:
                item[key] = rs[0][key]
        out.append(item)
    return out


def subject_macro_f1(subjects: Iterable[Mapping]) -> float:
    """Macro-F1 of the subject decisions (the paper's model-selection criterion)."""
    subjects = list(subjects)
    y = [int(s["label"]) for s in subjects]
    d = [int(s["decision"]) for s in subjects]
    return float(f1_score(y, d, average="macro", zero_division=0))
