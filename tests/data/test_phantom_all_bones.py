"""The hand cohort's all-bones mask (every rendered bone, carpals and phalanges included) for binary bone
segmentation, and its honesty check: Otsu of the radiograph is a useful but imperfect pseudo-label of it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from monai_osteo.data.phantoms.cohort import generate_hand_cohort
from monai_osteo.transforms.otsu import OtsuPseudoMask


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("all_bones")
    datalist = generate_hand_cohort(out, subjects=12, unlabeled=2, height=384, workers=1, progress=False)
    raw = json.loads(datalist.read_text())
    records = [r for k in ("training", "validation", "test", "unlabeled") for r in raw[k]]

    def read(rel):
        return np.asarray(Image.open(out / rel))

    return [(read(r["image"]).astype(np.float64), read(r["mask_all_bones"]), read(r["mask_truth"]), r)
            for r in records]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_every_record_has_a_binary_all_bones_mask_containing_the_target_bones(cohort):
    for _, bones, truth, rec in cohort:
        assert rec["mask_all_bones"].endswith("_bones.png") and bones.dtype == np.uint8
        assert set(np.unique(bones).tolist()) <= {0, 1}
        assert np.all(bones[truth > 0] == 1)  # the 7 target bones are bones
        # carpals and phalanges too: about 1.6 times the target bones' area on this phantom
        assert 1.3 < bones.sum() / (truth > 0).sum() < 2.0


def test_otsu_is_a_useful_but_imperfect_pseudo_label_of_all_bones(cohort):
    """Otsu (bright) vs the all-bones mask: soft tissue, the side marker and collimation leak in, so the IoU
    leaves room to learn; dark polarity (the control) finds the background instead."""
    bright = [iou(OtsuPseudoMask()(img[None])[0] > 0, bones > 0) for img, bones, _, _ in cohort]
    dark = [iou(OtsuPseudoMask(foreground="dark")(img[None])[0] > 0, bones > 0) for img, bones, _, _ in cohort]
    print(f"Otsu (bright) vs all bones IoU: mean {np.mean(bright):.3f}, range {min(bright):.3f}-{max(bright):.3f}; "
          f"dark {np.mean(dark):.3f}")
    assert 0.3 < np.mean(bright) < 0.75 and max(bright) < 0.9
    assert np.mean(dark) < 0.1
