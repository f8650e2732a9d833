"""Data: phantom cohorts, subject-wise splits and the radiograph/volume reader."""

from monai_osteo.data.phantoms import ensure_hand_cohort, generate_hand_cohort
from monai_osteo.data.readers import (
    SUPPORTED_SUFFIXES,
    LoadAnnotatorMasksd,
    LoadRadiograph,
    LoadRadiographD,
    LoadRadiographd,
    LoadRadiographDict,
    RadiographReadError,
)
from monai_osteo.data.splits import subject_split

__all__ = [
    "SUPPORTED_SUFFIXES",
    "LoadAnnotatorMasksd",
    "LoadRadiograph",
    "LoadRadiographD",
    "LoadRadiographDict",
    "LoadRadiographd",
    "RadiographReadError",
    "ensure_hand_cohort",
    "generate_hand_cohort",
    "subject_split",
]
