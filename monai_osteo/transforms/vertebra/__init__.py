"""Vertebra ROI extraction from a CT and its vertebra label map: array, dictionary and functional forms."""

from monai_osteo.transforms.vertebra.array import ExtractVertebraROI, VertebraROIError
from monai_osteo.transforms.vertebra.dictionary import ExtractVertebraROID, ExtractVertebraROId, ExtractVertebraROIDict
from monai_osteo.transforms.vertebra.functional import (
    VertebraGeometry,
    extract_vertebra_roi,
    roi_affine,
    vertebra_geometries,
)

__all__ = [
    "ExtractVertebraROI",
    "ExtractVertebraROID",
    "ExtractVertebraROIDict",
    "ExtractVertebraROId",
    "VertebraGeometry",
    "VertebraROIError",
    "extract_vertebra_roi",
    "roi_affine",
    "vertebra_geometries",
]
