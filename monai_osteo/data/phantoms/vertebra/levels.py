"""Vertebral levels of the phantom: the convention (from ``monai_osteo.data.vertebra_labels``) and body geometry.

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

from monai_osteo.data.vertebra_labels import LEVELS, LUMBAR_DXA_LEVELS, VERSE_LABELS, level_name, position_of

__all__ = [
    "LEVELS",
    "LUMBAR_DXA_LEVELS",
    "VERSE_LABELS",
    "body_size_mm",
    "level_name",
    "position_of",
    "relabel_to_verse",
]

# width x depth x height of the vertebral body (mm) at a few levels (adult, averaged over sexes); linear between
_GEOMETRY_ANCHORS = {"T1": (25.0, 15.0, 15.0), "T6": (30.0, 21.0, 19.0), "T12": (38.0, 28.0, 23.0),
                     "L1": (42.0, 30.0, 25.0), "L4": (48.0, 35.0, 27.0), "L6": (50.0, 35.0, 26.0)}


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
