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


def test_grid_fit_matches_per_index_least_squares():
    """Oracle: for every (scale, sigma, index) blur shell and canal separately and solve with ``np.linalg.lstsq``;
    the batched normal-equation fit finds the same best index, scale and blur and the same residual."""
    from monai_osteo.metrics.cortical_index import _chord, _grid_fit

    rng = np.random.default_rng(3)
    s = np.arange(-12.0, 12.0 + 1e-9, 0.25)
    radius, ci_true = 6.0, 0.4
    clean = 0.2 * (_chord(radius, s) - _chord(radius * (1 - ci_true), s)) + 0.05 * _chord(radius * (1 - ci_true), s)
    profile = ndimage.gaussian_filter1d(clean, 1.0 / 0.25) + 0.1 + 0.002 * s + rng.normal(0, 0.01, s.size)
    fit = np.abs(s) <= 1.3 * radius
    grid, scales, sigmas = np.linspace(0.05, 0.95, 19), np.linspace(0.9, 1.1, 5), (0.5, 1.0, 2.0)
    best = (np.inf, None, None, None)
    for scale in scales:
        for sigma in sigmas:
            for ci in grid:
                canal = _chord(radius * scale * (1 - ci), s)
                shell = _chord(radius * scale, s) - canal
                blur = sigma / 0.25
                cols = [ndimage.gaussian_filter1d(shell, blur)[fit], ndimage.gaussian_filter1d(canal, blur)[fit],
                        np.ones(fit.sum()), s[fit]]
                a = np.stack(cols, 1)
                coef, *_ = np.linalg.lstsq(a, profile[fit], rcond=None)
                r = float(((a @ coef - profile[fit]) ** 2).sum()) if coef[0] > 0 else np.inf
                if r < best[0]:
                    best = (r, ci, scale, sigma)
    got = _grid_fit(profile, s, fit, radius, grid, scales, sigmas)
    assert got[1:] == pytest.approx(best[1:]) and got[0] == pytest.approx(best[0], rel=1e-6)
    assert abs(got[1] - ci_true) < 0.06
