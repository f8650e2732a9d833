"""Screening metrics, subject and patient aggregation, vertebral CT evaluation and classical radiographic indices."""

from monai_osteo.metrics.cortical_index import metacarpal_cortical_index
from monai_osteo.metrics.quality import (
    QC_FLAGS,
    describe_qc_flags,
    missing_bone_names,
    screening_qc_flags,
    segmentation_confidence,
)
from monai_osteo.metrics.s4mi import BalancedAccuracyMetric, MacroF1Metric, MicroF1Metric, MicroRecallMetric
from monai_osteo.metrics.screening import best_threshold, screening_metrics
from monai_osteo.metrics.segmentation import (
    ConsensusDiceMetric,
    GEDMetric,
    consensus_labels,
    generalized_energy_distance,
    iou_distance,
    per_class_dice,
)
from monai_osteo.metrics.subject import aggregate_subjects, subject_macro_f1
from monai_osteo.metrics.subject_metric import SubjectAUC, SubjectMacroF1, subject_key_metric
from monai_osteo.metrics.vertebra import (
    aggregate_patients,
    bmd_agreement,
    paired_tests,
    paper_metric_percent,
    site_metrics,
)

__all__ = [
    "BalancedAccuracyMetric",
    "ConsensusDiceMetric",
    "GEDMetric",
    "MacroF1Metric",
    "MicroF1Metric",
    "MicroRecallMetric",
    "QC_FLAGS",
    "SubjectAUC",
    "SubjectMacroF1",
    "aggregate_patients",
    "aggregate_subjects",
    "best_threshold",
    "bmd_agreement",
    "consensus_labels",
    "describe_qc_flags",
    "generalized_energy_distance",
    "iou_distance",
    "metacarpal_cortical_index",
    "missing_bone_names",
    "paired_tests",
    "paper_metric_percent",
    "per_class_dice",
    "screening_metrics",
    "screening_qc_flags",
    "segmentation_confidence",
    "site_metrics",
    "subject_key_metric",
    "subject_macro_f1",
]
