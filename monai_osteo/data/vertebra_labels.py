"""Vertebral-level convention: names, the paper's 18 position labels and VerSe label-map values (a leaf module).

Label-map convention: **VerSe** (Sekuboyina et al. 2021, the VerSe'19/'20 challenge): one integer per whole vertebra
(body and posterior elements), C1–C7 = 1–7, T1–T12 = 8–19, L1–L5 = 20–24, L6 (lumbarisation) = 25, sacrum = 26,
T13 = 28; 0 is background. Position labels (the paper's 18-way position head): T1–T12 → 1–12, L1–L6 → 13–18.
"""

from __future__ import annotations

__all__ = ["LEVELS", "LUMBAR_DXA_LEVELS", "VERSE_LABELS", "level_name", "position_of"]

#: the 18 levels the cohort and the position head know, cranial to caudal
LEVELS = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 7)])
#: the levels DXA measures
LUMBAR_DXA_LEVELS = ("L1", "L2", "L3", "L4")
#: VerSe label value of each level (and of the cervical vertebrae, T13 and the sacrum)
VERSE_LABELS = {**{f"C{i}": i for i in range(1, 8)}, **{f"T{i}": 7 + i for i in range(1, 13)},
                **{f"L{i}": 19 + i for i in range(1, 7)}, "S1": 26, "T13": 28}
_VERSE_NAMES = {v: k for k, v in VERSE_LABELS.items()}


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
