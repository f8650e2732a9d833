"""Screening reports and figures."""

from monai_osteo.report.figures import save_roc_png

__all__ = ["save_roc_png"]
