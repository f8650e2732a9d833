"""Losses: OT segmentation loss (hand paper, Eqs. 7-9), supervised contrastive loss, the multi-crop
self-supervised loss (SimCLR/SupCon/SwaV/VICReg), the BYOL/SimSiam/DINO loss, the focal Tversky loss (MedSASS) and
the vertebral CT multi-task loss (Eq. 4); pure maths in ``functional``."""

from monai_osteo.losses.cass import CASSLoss
from monai_osteo.losses.ce_dice import WeightedCEDiceLoss
from monai_osteo.losses.class_weights import median_frequency_weights
from monai_osteo.losses.focal_tversky import FocalTverskyLoss
from monai_osteo.losses.momentum_ssl import PairSSLLoss
from monai_osteo.losses.multicrop_ssl import MultiCropSSLLoss
from monai_osteo.losses.multitask import MultiTaskLoss
from monai_osteo.losses.ot_segmentation import OTSegmentationLoss
from monai_osteo.losses.supcon import SupConLoss

__all__ = [
    "CASSLoss",
    "FocalTverskyLoss",
    "MultiCropSSLLoss",
    "MultiTaskLoss",
    "OTSegmentationLoss",
    "PairSSLLoss",
    "SupConLoss",
    "WeightedCEDiceLoss",
    "median_frequency_weights",
]
