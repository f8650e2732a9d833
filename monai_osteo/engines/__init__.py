"""Ignite/MONAI trainers and evaluators."""

from monai_osteo.engines.ot_segmentation import (
    OTSegmentationEvaluator,
    OTSegmentationTrainer,
    dice_output_transform,
    ged_output_transform,
)
from monai_osteo.engines.s4mi.cass import CASSTrainer
from monai_osteo.engines.s4mi.cross_teaching import CrossTeachingTrainer
from monai_osteo.engines.ssl_trainer import MultiViewSSLTrainer

__all__ = [
    "CASSTrainer",
    "CrossTeachingTrainer",
    "MultiViewSSLTrainer",
    "OTSegmentationEvaluator",
    "OTSegmentationTrainer",
    "dice_output_transform",
    "ged_output_transform",
]
