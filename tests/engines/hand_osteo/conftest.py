"""A tiny labelled phantom hand cohort shared by the baseline and evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from monai_osteo.data.phantoms import ensure_hand_cohort


@pytest.fixture(scope="package")
def cohort(tmp_path_factory) -> Path:
    """datalist.json of 64 labelled phantoms (about 6 test subjects of both classes), 256 pixels high."""
    return ensure_hand_cohort(tmp_path_factory.mktemp("hand_cohort"), "quick", seed=0, subjects=64, unlabeled=0,
                              height=256)
