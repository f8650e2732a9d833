"""Screening metrics, subject aggregation and classical radiographic indices."""

from monai_osteo.metrics.cortical_index import metacarpal_cortical_index
from monai_osteo.metrics.screening import best_threshold, screening_metrics
from monai_osteo.metrics.segmentation import (
    ConsensusDiceMetric,
    GEDMetric,
    consensus_labels,
    generalized_energy_distance,
    iou_distance,
    per_class_dice,
)

__all__ = [
    "ConsensusDiceMetric",
    "GEDMetric",
    "best_threshold",
    "consensus_labels",
    "generalized_energy_distance",
    "iou_distance",
    "metacarpal_cortical_index",
    "per_class_dice",
    "screening_metrics",
]
