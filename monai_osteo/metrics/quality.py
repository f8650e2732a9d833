"""Quality-control flags of one screening: are all target bones found, is the segmentation confident, is it a hand?

A screening result is only shown without a caveat when the segmentation it rests on is plausible. The
checks are deliberately simple and threshold-based so that their behaviour at the boundary is obvious:
every flag fires strictly below (or outside) its threshold, never at it.

- [0] hand_xray_osteoporosis_journal, §"Bone segmentation" (7 target bones: ulna, radius, M1-M5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from monai_osteo.data.labels import BONE_LABELS

__all__ = ["QC_FLAGS", "describe_qc_flags", "missing_bone_names", "screening_qc_flags", "segmentation_confidence"]

#: every flag :func:`screening_qc_flags` may return, in the order it returns them
QC_FLAGS = ("missing_bones", "low_segmentation_confidence", "not_a_hand_radiograph")

_DESCRIPTIONS = {
    "missing_bones": "missing bones",
    "low_segmentation_confidence": "low segmentation confidence: check the bone masks before trusting the result",
    "not_a_hand_radiograph": "may not be a hand radiograph (too few bones found or implausible bone area)",
}


def _unique_names(bones_found: Sequence[str], arg: str = "bones_found") -> list[str]:
    if isinstance(bones_found, (str, bytes)):
        raise ValueError(f"{arg} must be a sequence of bone names, got the single string {bones_found!r}; "
                         f"wrap it in a list.")
    names = list(dict.fromkeys(bones_found))
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ValueError(f"{arg} must contain bone names (str), got {bad!r}.")
    return names


def _fraction(value: float, arg: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{arg} must be a finite number in [0, 1], got {value!r}.")
    return value


def missing_bone_names(bones_found: Sequence[str], expected: Sequence[str] = tuple(BONE_LABELS)) -> list[str]:
    """Names in ``expected`` (default: the 7 target bones, in label order) that are not in ``bones_found``."""
    found = set(_unique_names(bones_found))
    return [name for name in _unique_names(expected, "expected") if name not in found]


def screening_qc_flags(bones_found: Sequence[str], confidence: float, bone_area_fraction: float,
                       expected_bones: int = 7, min_confidence: float = 0.8, min_bones_for_hand: int = 4,
                       area_range: tuple[float, float] = (0.005, 0.6)) -> list[str]:
    """Quality-control flags of one screening, a subset of :data:`QC_FLAGS` in that order (empty = QC ok).

    - ``"missing_bones"``: fewer than ``expected_bones`` distinct bones found (list them with
      :func:`missing_bone_names`).
    - ``"low_segmentation_confidence"``: ``confidence < min_confidence``.
    - ``"not_a_hand_radiograph"``: fewer than ``min_bones_for_hand`` bones found, or ``bone_area_fraction``
      outside the closed interval ``area_range``.

    Args:
        bones_found: names of the bones present in the predicted label map (duplicates count once).
        confidence: segmentation confidence in [0, 1], e.g. :func:`segmentation_confidence`.
        bone_area_fraction: fraction of image pixels labelled as bone, e.g. ``(labels > 0).mean()``.
        expected_bones: number of target bones in a complete hand.
        min_confidence: lowest confidence that raises no flag.
        min_bones_for_hand: fewest bones that still look like a hand.
        area_range: (low, high) plausible bone area fraction, both ends included.
    """
    names = _unique_names(bones_found)
    confidence = _fraction(confidence, "confidence")
    area = _fraction(bone_area_fraction, "bone_area_fraction")
    min_confidence = _fraction(min_confidence, "min_confidence")
    if int(expected_bones) != expected_bones or expected_bones < 1:
        raise ValueError(f"expected_bones must be a positive integer, got {expected_bones!r}.")
    if int(min_bones_for_hand) != min_bones_for_hand or not 0 <= min_bones_for_hand <= expected_bones:
        raise ValueError(f"min_bones_for_hand must be an integer in [0, expected_bones={expected_bones}], "
                         f"got {min_bones_for_hand!r}.")
    if len(area_range) != 2:
        raise ValueError(f"area_range must be a (low, high) pair, got {area_range!r}.")
    low, high = _fraction(area_range[0], "area_range[0]"), _fraction(area_range[1], "area_range[1]")
    if low > high:
        raise ValueError(f"area_range must satisfy low <= high, got {area_range!r}.")

    flags = []
    if len(names) < expected_bones:
        flags.append("missing_bones")
    if confidence < min_confidence:
        flags.append("low_segmentation_confidence")
    if len(names) < min_bones_for_hand or not low <= area <= high:
        flags.append("not_a_hand_radiograph")
    return flags


def describe_qc_flags(flags: Sequence[str], missing: Sequence[str] = ()) -> list[str]:
    """One human-readable sentence per flag (same order); ``missing`` names the missing bones, if known."""
    if isinstance(flags, str):
        raise ValueError(f"flags must be a sequence of flag strings, got the single string {flags!r}; "
                         f"wrap it in a list.")
    out = []
    for flag in flags:
        if flag not in _DESCRIPTIONS:
            raise ValueError(f"flags must be among {QC_FLAGS}, got {flag!r}.")
        text = _DESCRIPTIONS[flag]
        if flag == "missing_bones" and missing:
            text = f"{text}: {', '.join(_unique_names(missing, 'missing'))}"
        out.append(text)
    return out


def segmentation_confidence(prob: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Mean over predicted bone pixels (``labels > 0``) of the largest class probability; 0.0 without bone.

    Args:
        prob: (C, H, W) (or (C, *spatial)) class probabilities, e.g. a softmax output without its batch dim.
        labels: (H, W) (or spatial) predicted label map, usually ``prob.argmax(0)``.
    """
    p = torch.as_tensor(prob)
    lab = torch.as_tensor(labels, device=p.device)
    if p.ndim < 2:
        raise ValueError(f"prob must have shape (C, *spatial), got {tuple(p.shape)}.")
    if tuple(lab.shape) != tuple(p.shape[1:]):
        raise ValueError(f"labels must have shape prob.shape[1:] = {tuple(p.shape[1:])}, got {tuple(lab.shape)}; "
                         f"drop batch/channel dims (e.g. labels[0]) so labels is (H, W).")
    if not torch.is_floating_point(p):
        raise ValueError(f"prob must hold floating-point probabilities, got dtype {p.dtype}.")
    bone = lab > 0
    if not bool(bone.any()):
        return 0.0
    top = p.max(dim=0).values[bone]
    if not bool(torch.isfinite(top).all()) or float(top.min()) < 0.0 or float(top.max()) > 1.0 + 1e-6:
        raise ValueError("prob must hold probabilities in [0, 1]; apply softmax to logits first.")
    return float(top.double().mean())
