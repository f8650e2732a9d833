"""Constrained multi-crop: multi-crop views that each keep a minimum share of non-zero (bone) pixels.

Hand paper §"Multi-crop data augmentation" (Fig. 3, Table 7): summed-area-table scoring of vectorised
RandomResizedCrop proposals instead of iterative rejection sampling.
"""

from __future__ import annotations

from monai_osteo.transforms.multicrop.array import RandConstrainedMultiCrop
from monai_osteo.transforms.multicrop.dictionary import (
    RandConstrainedMultiCropD,
    RandConstrainedMultiCropd,
    RandConstrainedMultiCropDict,
)
from monai_osteo.transforms.multicrop.functional import (
    WindowSample,
    draw_windows,
    sample_windows,
    summed_area_table,
    window_fraction_map,
    window_fractions,
    window_sums,
)

__all__ = [
    "RandConstrainedMultiCrop",
    "RandConstrainedMultiCropD",
    "RandConstrainedMultiCropDict",
    "RandConstrainedMultiCropd",
    "WindowSample",
    "draw_windows",
    "sample_windows",
    "summed_area_table",
    "window_fraction_map",
    "window_fractions",
    "window_sums",
]
