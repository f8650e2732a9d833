"""Label convention of the hand radiographs: one leaf module, no dependencies.

The bone label maps (phantom ground truth, annotator masks, segmentation outputs, MONAI Label) use
0 = background, 1 = ulna, 2 = radius, 3-7 = 1st-5th metacarpal (M1-M5).
"""

from __future__ import annotations

__all__ = ["BACKGROUND", "BONES", "BONE_LABELS", "CHANNEL_DEF"]

#: bone name -> label value
BONE_LABELS: dict[str, int] = {"ulna": 1, "radius": 2, "M1": 3, "M2": 4, "M3": 5, "M4": 6, "M5": 7}
#: the 7 target bones in label order
BONES: tuple[str, ...] = tuple(sorted(BONE_LABELS, key=BONE_LABELS.get))
BACKGROUND = "background"
#: MONAI bundle ``channel_def`` of the 8-class label map ({"0": "background", "1": "ulna", ...})
CHANNEL_DEF: dict[str, str] = {"0": BACKGROUND, **{str(v): k for k, v in BONE_LABELS.items()}}
