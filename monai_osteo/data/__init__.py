"""Data: label convention, phantom cohorts, subject-wise splits and the radiograph/volume reader.

The phantom generators (``ensure_hand_cohort``, ``generate_hand_cohort``) are imported on first use, so that
``import monai_osteo.data`` (and every transform that needs the label convention) stays light.
"""

from monai_osteo.data.feature_dataset import FrozenFeatureDataset
from monai_osteo.data.fractions import stratified_label_fraction
from monai_osteo.data.labels import BONE_LABELS, BONES, CHANNEL_DEF
from monai_osteo.data.readers import (
    SUPPORTED_SUFFIXES,
    LoadAnnotatorMasksd,
    LoadBonePatchd,
    LoadRadiograph,
    LoadRadiographD,
    LoadRadiographd,
    LoadRadiographDict,
    RadiographReadError,
)
from monai_osteo.data.samplers import GroupedBatchSampler, TwoStreamBatchSampler
from monai_osteo.data.splits import subject_split

__all__ = [
    "BONES",
    "BONE_LABELS",
    "CHANNEL_DEF",
    "FrozenFeatureDataset",
    "LoadAnnotatorMasksd",
    "LoadBonePatchd",
    "LoadRadiograph",
    "LoadRadiographD",
    "LoadRadiographDict",
    "LoadRadiographd",
    "RadiographReadError",
    "SUPPORTED_SUFFIXES",
    "GroupedBatchSampler",
    "TwoStreamBatchSampler",
    "ensure_hand_cohort",
    "generate_hand_cohort",
    "stratified_label_fraction",
    "subject_split",
]

_LAZY = {"ensure_hand_cohort", "generate_hand_cohort"}


def __getattr__(name: str):
    if name in _LAZY:
        from monai_osteo.data import phantoms

        return getattr(phantoms, name)
    raise AttributeError(f"module 'monai_osteo.data' has no attribute {name!r}")
