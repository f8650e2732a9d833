"""2MCI measurement against an analytic projected tube with known cortical index."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from monai_osteo.data.phantoms import render_subject, sample_subject
from monai_osteo.metrics.cortical_index import metacarpal_cortical_index


def _tube(ci: float, radius: float = 12.0, angle: float = 20.0, shape=(200, 160)):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    a = np.deg2rad(angle)
    d = np.abs((cols - shape[1] / 2) * np.cos(a) - (rows - shape[0] / 2) * np.sin(a))
    along = (cols - shape[1] / 2) * np.sin(a) + (rows - shape[0] / 2) * np.cos(a)
    inner = radius * (1 - ci)
    chord = lambda r: 2 * np.sqrt(np.clip(r * r - d * d, 0, None))  # noqa: E731
    img = (chord(radius) - chord(inner)) * (np.abs(along) < 70)
    mask = ((d < radius) & (np.abs(along) < 70)).astype(np.uint8) * 4
    return ndimage.gaussian_filter(img, 0.7), mask


@pytest.mark.parametrize("ci", [0.3, 0.45, 0.6])
def test_matches_analytic_tube(ci):
    img, mask = _tube(ci)
    assert abs(metacarpal_cortical_index(img, mask) - ci) < 0.03
    assert abs(metacarpal_cortical_index(img[None], mask[None]) - ci) < 0.03


def test_fit_outer_corrects_a_loose_or_tight_mask():
    img, mask = _tube(0.45)
    for grow in (-1, 1):
        bone = mask > 0
        bone = ndimage.binary_dilation(bone) if grow > 0 else ndimage.binary_erosion(bone)
        off = metacarpal_cortical_index(img, bone.astype(np.uint8) * 4)
        fitted = metacarpal_cortical_index(img, bone.astype(np.uint8) * 4, fit_outer=True)
        assert abs(fitted - 0.45) < 0.03 < abs(off - 0.45)


def test_tracks_phantom_phenotype():
    truth, measured = [], []
    for i in range(24):
        s = sample_subject(np.random.default_rng(i))
        r, _ = render_subject(s, seed=0, stream=99, index=i, height=512)
        truth.append(s.cortical_index)
        measured.append(metacarpal_cortical_index(r.image / 65535.0, r.truth))
    ok = np.isfinite(measured)
    assert ok.sum() >= 22
    assert np.corrcoef(np.array(truth)[ok], np.array(measured)[ok])[0, 1] > 0.8


def test_absent_bone_and_bad_shapes():
    img, mask = _tube(0.4)
    assert np.isnan(metacarpal_cortical_index(img, np.zeros_like(mask)))
    with pytest.raises(ValueError, match="same shape"):
        metacarpal_cortical_index(img, mask[:10])
