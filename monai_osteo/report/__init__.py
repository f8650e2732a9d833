"""Screening reports and figures."""

from monai_osteo.report.contributions import bone_contributions, save_bone_contribution_png
from monai_osteo.report.figures import BONE_COLORS, overlay_labels, save_roc_png, save_segmentation_png
from monai_osteo.report.screening_report import save_screening_report_png

__all__ = [
    "BONE_COLORS",
    "bone_contributions",
    "overlay_labels",
    "save_bone_contribution_png",
    "save_roc_png",
    "save_screening_report_png",
    "save_segmentation_png",
]
