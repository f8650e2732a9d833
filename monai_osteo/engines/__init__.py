"""Ignite/MONAI trainers and evaluators."""

from monai_osteo.engines.ot_segmentation import (
    OTSegmentationEvaluator,
    OTSegmentationTrainer,
    dice_output_transform,
    ged_output_transform,
)
from monai_osteo.engines.ssl_trainer import MultiViewSSLTrainer

__all__ = [
    "MultiViewSSLTrainer",
    "OTSegmentationEvaluator",
    "OTSegmentationTrainer",
    "dice_output_transform",
    "ged_output_transform",
]
