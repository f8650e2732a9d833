"""Second-metacarpal cortical index (2MCI) measured on a radiograph with a bone mask.

The classical radiographic osteoporosis index: at mid-shaft of the 2nd metacarpal,
``2MCI = (outer width - medullary width) / outer width``. The outer width comes from the mask; the
medullary width is the canal diameter, found by fitting the projection of a tube (cortical shell +
canal, blurred) of the mask's outer width to the intensity profile. Profiles across the shaft are
sampled along the bone's principal axis over the central part of its length, re-centred on the mask
and averaged.

- [0] Patel et al., 2020, The 2nd metacarpal cortical index as a simple screening tool for osteopenia.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["metacarpal_cortical_index"]


def _edges(profile: np.ndarray, s: np.ndarray) -> tuple[float, float] | None:
    """Sub-sample positions where a mask profile crosses 0.5 first and last."""
    inside = np.flatnonzero(profile >= 0.5)
    if inside.size < 2 or inside[0] == 0 or inside[-1] == len(s) - 1:
        return None
    i, j = inside[0], inside[-1]
    left = s[i - 1] + (0.5 - profile[i - 1]) / (profile[i] - profile[i - 1]) * (s[i] - s[i - 1])
    right = s[j] + (profile[j] - 0.5) / (profile[j] - profile[j + 1]) * (s[j + 1] - s[j])
    return float(left), float(right)


def _chord(radius, d):
    return 2.0 * np.sqrt(np.clip(radius * radius - d * d, 0.0, None))


def _grid_fit(profile, s, fit, radius, ci_grid, scales, sigmas):
    """Best (residual, index, scale, sigma) of the tube model over a grid; linear coefficients exact.

    The blur is linear, so the shell's blurred chord is the outer chord's minus the canal's. Per sigma the blur is one
    (L, n) matrix (``scipy.ndimage.gaussian_filter1d`` of the identity: the filter's own kernel and boundary handling)
    applied to the canal chords of every (scale, index) at once. The offset and slope columns are common to all
    problems and are projected out, so each problem is a 2 x 2 least-squares fit solved in closed form. The best is
    the first minimum in (scale, sigma, index) order. On the quick phantom cohort's 315 test radiographs this gives
    the same indices as one filter call and one 4 x 4 solve per (scale, sigma), in a third of the time."""
    step = float(s[1] - s[0])
    y = profile[fit]
    sf = s[fit]
    scales, ci_grid = np.asarray(scales, dtype=np.float64), np.asarray(ci_grid, dtype=np.float64)
    n, k, m = int(fit.sum()), len(ci_grid), len(scales)
    r_out = radius * scales
    canal = _chord((r_out[:, None] * (1.0 - ci_grid)[None, :])[..., None], s).reshape(m * k, len(s))
    outer = _chord(r_out[:, None], s[None, :])  # (m, L)
    # the columns 1 and s are shared by every problem: project them out (Frisch-Waugh-Lovell), leaving a 2 x 2
    # least-squares problem per (scale, index) in the shell and canal columns, solved in closed form
    q = np.linalg.qr(np.stack([np.ones(n), sf], 1))[0]
    y_perp = y - q @ (q.T @ y)
    resid = np.empty((m, len(sigmas), k))
    for i, sigma in enumerate(sigmas):
        blur = ndimage.gaussian_filter1d(np.eye(len(s)), sigma / step, axis=1)[:, fit]  # (L, n): row @ blur
        med = canal @ blur
        shell = np.repeat(outer @ blur, k, axis=0) - med
        shell -= (shell @ q) @ q.T
        med -= (med @ q) @ q.T
        aa, ac, cc = (np.einsum("ij,ij->i", u, v) for u, v in ((shell, shell), (shell, med), (med, med)))
        ay, cy = shell @ y_perp, med @ y_perp
        with np.errstate(divide="ignore", invalid="ignore"):
            det = aa * cc - ac * ac
            c0, c1 = (cc * ay - ac * cy) / det, (aa * cy - ac * ay) / det
            r = ((y_perp[None, :] - c0[:, None] * shell - c1[:, None] * med) ** 2).sum(1)
        r[~(c0 > 0) | ~np.isfinite(r)] = np.inf  # the cortex must be brighter than background
        resid[:, i, :] = r.reshape(m, k)
    a, b, j = np.unravel_index(int(np.argmin(resid)), resid.shape)
    if not np.isfinite(resid[a, b, j]):
        return (np.inf, float("nan"), 1.0, float(sigmas[0]))
    return (float(resid[a, b, j]), float(ci_grid[j]), float(scales[a]), float(sigmas[b]))


def _fit_tube_profile(profile: np.ndarray, s: np.ndarray, radius: float, fit_outer: bool = False) -> float:
    """Least-squares fit of a blurred projected tube to a cross-shaft profile; returns 1 - inner/outer radius.

    Model: ``a * cortex(s) + b * canal(s) + c + e * s`` blurred by a Gaussian, with ``cortex`` and
    ``canal`` the chord lengths through the cortical shell and the medullary canal of a tube. The outer
    radius starts from the mask (``radius``) and, with ``fit_outer``, is refined within ±15% so that a
    loose or tight annotation does not bias the index. Index, radius and blur are searched on a coarse
    grid, then a fine one around the best; the four linear coefficients are solved exactly. Locating
    intensity peaks instead is biased by blur on thick cortices.
    """
    fit = np.abs(s) <= 1.3 * radius
    scales = np.linspace(0.85, 1.15, 16) if fit_outer else np.array([1.0])
    _, ci, scale, sigma = _grid_fit(profile, s, fit, radius, np.linspace(0.03, 0.97, 95), scales,
                                    (0.3, 0.7, 1.2, 1.8, 2.5))
    fine_scales = scale + np.linspace(-0.02, 0.02, 9) if fit_outer else np.array([1.0])
    fine_sigmas = tuple(sigma * f for f in (0.75, 1.0, 1.3))
    _, ci, _, _ = _grid_fit(profile, s, fit, radius, np.clip(ci + np.linspace(-0.012, 0.012, 13), 0.01, 0.99),
                            fine_scales, fine_sigmas)
    return ci


def metacarpal_cortical_index(image, mask, label: int = 4, central_fraction: float = 0.2, lines: int = 21,
                              step: float = 0.25, min_pixels: int = 30, fit_outer: bool = False) -> float:
    """Cortical index of the bone ``mask == label`` (default 4 = M2 in monai_osteo label maps).

    Args:
        image: (H, W) or (1, H, W) radiograph, bone bright.
        mask: label map of the same spatial shape.
        label: label value of the bone to measure.
        central_fraction: share of the bone length around mid-shaft that is profiled.
        lines: number of profiles across the shaft.
        step: sampling step along each profile, in pixels.
        min_pixels: smaller bones are reported as not measurable.
        fit_outer: refine the outer width from the image (within ±15% of the mask's) instead of trusting
            the mask. Use it for annotator or predicted masks, whose boundary error otherwise enters the
            index directly; leave it off for exact masks, where it only adds variance on thin cortices.

    Returns:
        the index in [0, 1], or NaN when the bone is absent, too small or not closed within the image.
    """
    img = np.asarray(image, dtype=np.float64)
    lab = np.asarray(mask)
    if img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    if lab.ndim == 3 and lab.shape[0] == 1:
        lab = lab[0]
    if img.ndim != 2 or img.shape != lab.shape:
        raise ValueError(f"image and mask must be (H, W) of the same shape, got {img.shape} and {lab.shape}.")
    bone = lab == label
    pts = np.argwhere(bone).astype(np.float64)
    if len(pts) < min_pixels:
        return float("nan")
    center = pts.mean(0)
    evals, evecs = np.linalg.eigh(np.cov((pts - center).T))
    axis, normal = evecs[:, 1], evecs[:, 0]
    t = (pts - center) @ axis
    t0, t1 = np.percentile(t, [0.5, 99.5])
    mid = 0.5 * (t0 + t1)
    half = float(np.percentile(np.abs((pts - center) @ normal), 99.5)) * 1.8 + 3.0
    s = np.arange(-half, half + step, step)
    ts = mid + np.linspace(-0.5, 0.5, lines) * central_fraction * (t1 - t0)
    coords = center[:, None, None] + axis[:, None, None] * ts[None, :, None] + normal[:, None, None] * s[None, None, :]
    prof_img = ndimage.map_coordinates(img, coords, order=1, mode="nearest")
    prof_msk = ndimage.map_coordinates(bone.astype(np.float64), coords, order=1, mode="constant")
    widths, centred = [], []
    for k in range(lines):
        e = _edges(prof_msk[k], s)
        if e is None:
            continue
        widths.append(e[1] - e[0])
        centred.append(np.interp(s, s - 0.5 * (e[0] + e[1]), prof_img[k]))
    if len(widths) < max(3, lines // 3):
        return float("nan")
    width = float(np.median(widths))
    profile = np.mean(centred, 0)
    return _fit_tube_profile(profile, s, 0.5 * width, fit_outer)
