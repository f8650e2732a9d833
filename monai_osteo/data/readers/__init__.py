"""Radiograph and CT-volume readers built on MONAI ``LoadImage``.

DICOM, PNG/JPEG/TIFF/BMP, NIfTI and NRRD files become channel-first float32 MetaTensors with bone bright,
rows as a viewer shows them, pixel spacing in the metadata and a single error type for every bad file.
"""

from __future__ import annotations

from monai_osteo.data.readers.array import SUPPORTED_SUFFIXES, LoadRadiograph
from monai_osteo.data.readers.ct import CTReadError, LoadCT, LoadCTD, LoadCTd, LoadCTDict
from monai_osteo.data.readers.dictionary import LoadRadiographD, LoadRadiographd, LoadRadiographDict
from monai_osteo.data.readers.errors import RadiographReadError
from monai_osteo.data.readers.functional import (
    LUMA_WEIGHTS_BT601,
    VOI_LUT_FUNCTIONS,
    apply_voi_window,
    min_max_normalize,
    rgb_to_gray,
    valid_spacing,
)
from monai_osteo.data.readers.masks import LoadAnnotatorMasksd
from monai_osteo.data.readers.patches import LoadBonePatchd, save_bone_patch

__all__ = [
    "CTReadError",
    "LoadCT",
    "LoadCTD",
    "LoadCTDict",
    "LoadCTd",
    "LoadAnnotatorMasksd",
    "LoadBonePatchd",
    "LUMA_WEIGHTS_BT601",
    "SUPPORTED_SUFFIXES",
    "VOI_LUT_FUNCTIONS",
    "LoadRadiograph",
    "LoadRadiographD",
    "LoadRadiographDict",
    "LoadRadiographd",
    "RadiographReadError",
    "apply_voi_window",
    "min_max_normalize",
    "rgb_to_gray",
    "save_bone_patch",
    "valid_spacing",
]
