"""Phantom vertebral-CT cohort: thoraco-lumbar CT in HU, VerSe vertebra label maps, DXA of L1–L4 on 3 devices."""

from monai_osteo.data.phantoms.vertebra.biology import (
    DEVICES,
    SITES,
    T_SCORE_THRESHOLD,
    Patient,
    VertebraTruth,
    dxa_reading,
    sample_patient,
)
from monai_osteo.data.phantoms.vertebra.cohort import (
    VERTEBRA_PRESETS,
    ensure_vertebra_cohort,
    generate_vertebra_cohort,
    write_nifti,
)
from monai_osteo.data.phantoms.vertebra.levels import (
    LEVELS,
    LUMBAR_DXA_LEVELS,
    VERSE_LABELS,
    body_size_mm,
    level_name,
    position_of,
    relabel_to_verse,
)
from monai_osteo.data.phantoms.vertebra.render import HU, RenderedCT, render_patient

__all__ = [
    "DEVICES", "HU", "LEVELS", "LUMBAR_DXA_LEVELS", "SITES", "T_SCORE_THRESHOLD", "VERSE_LABELS", "VERTEBRA_PRESETS",
    "Patient", "RenderedCT", "VertebraTruth", "body_size_mm", "dxa_reading", "ensure_vertebra_cohort",
    "generate_vertebra_cohort", "level_name", "position_of", "relabel_to_verse", "render_patient", "sample_patient",
    "write_nifti",
]
