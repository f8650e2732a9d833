"""Otsu pseudo-mask (MedSASS §3.3) with the Table 3 alternatives: GHT, adaptive mean, adaptive gaussian."""

from monai_osteo.transforms.otsu.array import PSEUDO_MASK_METHODS, OtsuPseudoMask
from monai_osteo.transforms.otsu.dictionary import OtsuPseudoMaskD, OtsuPseudoMaskd, OtsuPseudoMaskDict
from monai_osteo.transforms.otsu.functional import (
    batched_histogram,
    ght_criterion,
    histogram_threshold,
    local_threshold,
    otsu_criterion,
    rgb_to_gray,
)

__all__ = [
    "PSEUDO_MASK_METHODS", "OtsuPseudoMask", "OtsuPseudoMaskD", "OtsuPseudoMaskDict", "OtsuPseudoMaskd",
    "batched_histogram", "ght_criterion", "histogram_threshold", "local_threshold", "otsu_criterion", "rgb_to_gray",
]
