"""Engines of the s4mi bundle: CASS (CNN + ViT similarity) and CNN <-> Swin cross-teaching trainers."""

from monai_osteo.engines.s4mi.cass import CASSTrainer
from monai_osteo.engines.s4mi.cross_teaching import CrossTeachingTrainer

__all__ = ["CASSTrainer", "CrossTeachingTrainer"]
