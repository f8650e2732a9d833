"""Screening metrics, subject aggregation and classical radiographic indices."""

from monai_osteo.metrics.cortical_index import metacarpal_cortical_index
from monai_osteo.metrics.screening import best_threshold, screening_metrics

__all__ = ["best_threshold", "metacarpal_cortical_index", "screening_metrics"]
