"""Ignite/MONAI trainers and evaluators."""

from monai_osteo.engines.ot_segmentation import (
    OTSegmentationEvaluator,
    OTSegmentationTrainer,
    dice_output_transform,
    ged_output_transform,
)

__all__ = ["OTSegmentationEvaluator", "OTSegmentationTrainer", "dice_output_transform", "ged_output_transform"]
