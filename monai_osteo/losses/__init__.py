"""Losses: OT segmentation loss (hand paper, Eqs. 7-9), supervised contrastive loss and the multi-crop
self-supervised loss (SimCLR/SupCon/SwaV/VICReg); pure maths in ``functional``."""

from monai_osteo.losses.multicrop_ssl import MultiCropSSLLoss
from monai_osteo.losses.ot_segmentation import OTSegmentationLoss
from monai_osteo.losses.supcon import SupConLoss

__all__ = ["MultiCropSSLLoss", "OTSegmentationLoss", "SupConLoss"]
