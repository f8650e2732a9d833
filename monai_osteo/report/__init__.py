"""Screening reports and figures."""

from monai_osteo.report.figures import BONE_COLORS, overlay_labels, save_roc_png, save_segmentation_png

__all__ = ["BONE_COLORS", "overlay_labels", "save_roc_png", "save_segmentation_png"]
