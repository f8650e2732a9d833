"""Deterministic phantom cohorts, the bundles' embedded datasets: hand radiographs, skin, fluorescence, vertebral CT."""

from monai_osteo.data.labels import BONE_LABELS
from monai_osteo.data.phantoms.anatomy import place_hand
from monai_osteo.data.phantoms.cohort import FIELD_MM, PRESETS, ensure_hand_cohort, generate_hand_cohort, render_subject
from monai_osteo.data.phantoms.fluorescence import (
    FLUORESCENCE_PRESETS,
    ensure_fluorescence_cohort,
    generate_fluorescence_cohort,
)
from monai_osteo.data.phantoms.render import render_hand
from monai_osteo.data.phantoms.skin import SKIN_PRESETS, ensure_skin_cohort, generate_skin_cohort
from monai_osteo.data.phantoms.subjects import (
    T_SCORE_THRESHOLD,
    SubjectPhenotype,
    sample_cohort_subjects,
    sample_subject,
)
from monai_osteo.data.phantoms.vertebra import VERTEBRA_PRESETS, ensure_vertebra_cohort, generate_vertebra_cohort

__all__ = [
    "BONE_LABELS",
    "FIELD_MM",
    "FLUORESCENCE_PRESETS",
    "PRESETS",
    "SKIN_PRESETS",
    "T_SCORE_THRESHOLD",
    "VERTEBRA_PRESETS",
    "SubjectPhenotype",
    "ensure_fluorescence_cohort",
    "ensure_hand_cohort",
    "ensure_skin_cohort",
    "ensure_vertebra_cohort",
    "generate_fluorescence_cohort",
    "generate_hand_cohort",
    "generate_skin_cohort",
    "generate_vertebra_cohort",
    "place_hand",
    "render_hand",
    "render_subject",
    "sample_cohort_subjects",
    "sample_subject",
]
