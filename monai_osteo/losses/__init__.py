"""Losses: OT segmentation loss (hand paper, Eqs. 7-9); pure maths in ``functional``."""

from monai_osteo.losses.ot_segmentation import OTSegmentationLoss

__all__ = ["OTSegmentationLoss"]
