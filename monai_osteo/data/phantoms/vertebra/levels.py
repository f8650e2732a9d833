"""Vertebral levels: names, the paper's 18 position labels, label-map values and body geometry.

Label-map convention: **VerSe** (Sekuboyina et al. 2021, the VerSe'19/'20 challenge; also what
``vertebrae_*`` masks of most tools can be mapped to): one integer per whole vertebra (body and posterior
elements), C1–C7 = 1–7, T1–T12 = 8–19, L1–L5 = 20–24, L6 (lumbarisation) = 25, sacrum = 26, T13 = 28; 0 is
background. Other tools' maps are converted by name with :func:`relabel_to_verse` (TotalSegmentator writes one
file per structure named ``vertebrae_T1`` … ``vertebrae_L5``, or a multilabel map whose id → name table
depends on its version: pass that table).

Position labels (the paper's 18-way position head): T1–T12 → 1–12, L1–L6 → 13–18.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "LEVELS",
    "LUMBAR_DXA_LEVELS",
    "VERSE_LABELS",
    "body_size_mm",
    "level_name",
    "position_of",
    "relabel_to_verse",
]

#: the 18 levels the cohort and the position head know, cranial to caudal
LEVELS = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 7)])
#: the levels DXA measures
LUMBAR_DXA_LEVELS = ("L1", "L2", "L3", "L4")
#: VerSe label value of each level (and of the cervical vertebrae, T13 and the sacrum)
VERSE_LABELS = {**{f"C{i}": i for i in range(1, 8)}, **{f"T{i}": 7 + i for i in range(1, 13)},
                **{f"L{i}": 19 + i for i in range(1, 7)}, "S1": 26, "T13": 28}
_VERSE_NAMES = {v: k for k, v in VERSE_LABELS.items()}

# width x depth x height of the vertebral body (mm) at a few levels (adult, averaged over sexes); linear between
_GEOMETRY_ANCHORS = {"T1": (25.0, 15.0, 15.0), "T6": (30.0, 21.0, 19.0), "T12": (38.0, 28.0, 23.0),
                     "L1": (42.0, 30.0, 25.0), "L4": (48.0, 35.0, 27.0), "L6": (50.0, 35.0, 26.0)}


def position_of(level: str) -> int:
    """The paper's position label (1–18) of ``level`` ("T1" … "L6")."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}.")
    return LEVELS.index(level) + 1


def level_name(verse_label: int) -> str:
    """Name ("T7", "L2", …) of a VerSe label value."""
    if int(verse_label) not in _VERSE_NAMES:
        raise ValueError(f"{verse_label!r} is not a VerSe vertebra label (1-26, 28); see VERSE_LABELS.")
    return _VERSE_NAMES[int(verse_label)]


def body_size_mm(level: str) -> np.ndarray:
    """Typical (width, depth, height) of the vertebral body of ``level`` in mm (interpolated between anchors)."""
    pos = position_of(level)
    anchors = sorted((position_of(k), np.asarray(v)) for k, v in _GEOMETRY_ANCHORS.items())
    xs = [a[0] for a in anchors]
    return np.array([np.interp(pos, xs, [a[1][i] for a in anchors]) for i in range(3)])


def relabel_to_verse(label_map: np.ndarray, names: Mapping[int, str]) -> np.ndarray:
    """Map another tool's vertebra label values to VerSe values by structure name.

    Args:
        label_map: integer label map of any shape.
        names: the tool's ``{label value: name}``; names such as ``"vertebrae_L1"``, ``"L1"`` or ``"T12"``
            (case-insensitive, a ``vertebrae_`` prefix is ignored); values whose name is not a vertebra become 0.

    Returns:
        a label map of the same shape with VerSe values (int16).
    """
    out = np.zeros(np.shape(label_map), dtype=np.int16)
    arr = np.asarray(label_map)
    for value, name in names.items():
        key = str(name).strip().upper().removeprefix("VERTEBRAE_")
        if key in VERSE_LABELS:
            out[arr == int(value)] = VERSE_LABELS[key]
    return out
