"""Dermoscopy (skin-lesion) phantom cohort: an ISIC-2017 analogue with RGB images, lesion masks and 3 classes.

Every image shows one pigmented lesion on skin of a random tone (independent of the class), under an
illumination gradient, with optional dermoscopy vignetting, hairs, ruler marks, air bubbles and colour
calibration patches: the distractors that fool a global threshold. The lesion is a star-shaped domain
``r(theta) = R0 (1 + sum_k a_k cos(k theta + phi_k))``, ``a_k ~ k^-beta``, darker than the skin by a contrast
``c`` in [0.08, 0.6], with internal structures (pigment network, dots/globules, border streaks, blue-white
veil, regression areas, milia-like cysts). The class (0 nevus, 1 seborrheic keratosis, 2 melanoma; ISIC-2017
training prevalence) shifts the distributions of these attributes, which overlap (Bayes error > 0). The mask
is a human-like tracing: the lesion's low harmonics plus a few pixels of smooth disagreement.

Every image is rendered from its own random stream ``(seed, stream, index)``, so a cohort is byte-identical
for a seed whatever the number of workers; files are written to a temporary name and renamed.
See ``specs/wave2.md`` §5.5 and §6.1.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from monai_osteo.data.phantoms.jobs import run_jobs, write_cohort
from monai_osteo.data.splits import subject_split
from monai_osteo.io import atomic_write, atomic_write_json

__all__ = [
    "SKIN_CLASSES", "SKIN_PREVALENCE", "SKIN_PRESETS", "ensure_skin_cohort", "generate_skin_cohort", "render_skin",
]

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
#: class index -> name (ISIC-2017 part 3)
SKIN_CLASSES = {0: "nevus", 1: "seborrheic_keratosis", 2: "melanoma"}
#: ISIC-2017 training prevalence of nevus, seborrheic keratosis, melanoma (1372, 254, 374 of 2000)
SKIN_PREVALENCE = (0.686, 0.127, 0.187)
#: named sizes: images per split and side length in pixels ("paper" = ISIC-2017's official 2000/150/600 at 480²;
#: ISIC-2017 has no separate unlabelled set, its training images serve as the unlabelled pool)
SKIN_PRESETS = {
    "tiny": {"training": 40, "validation": 8, "test": 16, "unlabeled": 8, "size": 128},
    "quick": {"training": 900, "validation": 120, "test": 240, "unlabeled": 300, "size": 256},
    "paper": {"training": 2000, "validation": 150, "test": 600, "unlabeled": 0, "size": 480},
}
_PARAMS = ("training", "validation", "test", "unlabeled", "size", "prevalence")

# per-class attribute distributions (nevus, SK, melanoma); they overlap on purpose
_AREA_MEDIAN = (0.18, 0.22, 0.26)  # lesion area fraction of the field (log-normal, clipped to [0.05, 0.5])
_BETA = ((2.2, 3.2), (1.8, 2.8), (1.1, 2.2))  # harmonic decay: larger = smoother border
_IRREGULARITY = ((0.04, 0.13), (0.05, 0.16), (0.09, 0.26))  # amplitude of the k = 2 harmonic
_CONTRAST = ((0.12, 0.55), (0.08, 0.45), (0.12, 0.55))
_HETEROGENEITY = ((0.05, 0.35), (0.1, 0.4), (0.3, 0.85))  # low-frequency variation of the pigment density
_EDGE_PX = ((1.5, 5.0), (0.7, 2.0), (1.0, 7.0))  # blur of the lesion border, pixels at 256²
_P_NETWORK = (0.6, 0.1, 0.6)
_P_DOTS = (0.4, 0.1, 0.55)
_P_STREAKS = (0.08, 0.03, 0.45)
_P_VEIL = (0.05, 0.05, 0.5)
_P_REGRESSION = (0.05, 0.1, 0.35)
_P_MILIA = (0.1, 0.7, 0.05)
_P_WAXY = (0.05, 0.8, 0.1)
_P_BLACK = (0.1, 0.1, 0.55)  # a second, black/dark-brown pigment component
_PIGMENT = {  # per-channel absorption of the pigment relative to gray (brown; SK: light yellowish brown)
    0: np.array([0.78, 1.0, 1.12]), 1: np.array([0.76, 0.99, 1.14]), 2: np.array([0.8, 1.0, 1.1]),
}
_SKIN_LIGHT = np.array([0.94, 0.79, 0.72])
_SKIN_DARK = np.array([0.50, 0.33, 0.24])


def _field(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Smooth random field of unit standard deviation on (n, n), correlation length about n / cells."""
    low = ndimage.gaussian_filter(rng.standard_normal((cells + 4, cells + 4)), 1.0, mode="wrap")
    pos = (np.arange(n) + 0.5) / n * cells + 1.5  # separable linear interpolation (cheaper than ndimage.zoom)
    i0 = pos.astype(int)
    w = (pos - i0)[:, None]
    rows = low[i0] * (1 - w) + low[i0 + 1] * w  # (n, cells + 4)
    f = rows[:, i0] * (1 - w.T) + rows[:, i0 + 1] * w.T
    return (f - f.mean()) / (f.std() + 1e-12)


def _bandpass(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Band-pass noise of unit standard deviation with blobs about ``2 sigma`` pixels wide."""
    w = rng.standard_normal((n, n))
    b = ndimage.gaussian_filter(w, sigma) - ndimage.gaussian_filter(w, 2.5 * sigma)
    return b / (b.std() + 1e-12)


def _impulse_alpha(n: int, ys: np.ndarray, xs: np.ndarray, sigma: float, gain: float) -> np.ndarray:
    """Opacity in [0, 1] of gaussian blobs of width ``sigma`` (pixels) around the points ``(ys, xs)`` (pixels)."""
    img = np.zeros((n, n))
    yi, xi = np.round(ys).astype(int), np.round(xs).astype(int)
    keep = (yi >= 0) & (yi < n) & (xi >= 0) & (xi < n)
    np.add.at(img, (yi[keep], xi[keep]), 1.0)
    return np.clip(ndimage.gaussian_filter(img, sigma) * gain, 0.0, 1.0)


def _dots_alpha(n: int, ys: np.ndarray, xs: np.ndarray, radius: float) -> np.ndarray:
    """Round dots of about ``radius`` pixels at the given points."""
    sigma = max(radius / 1.6, 0.5)
    return _impulse_alpha(n, ys, xs, sigma, 2.0 * np.pi * sigma**2 * 1.8)


def _strokes_alpha(n: int, curves: list[tuple[np.ndarray, np.ndarray]], width: float) -> np.ndarray:
    """Strokes ``width`` pixels wide along curves given as densely sampled points (0.5 pixel steps)."""
    if not curves:
        return np.zeros((n, n))
    ys = np.concatenate([c[0] for c in curves])
    xs = np.concatenate([c[1] for c in curves])
    sigma = max(width / 2.5, 0.45)
    return _impulse_alpha(n, ys, xs, sigma, np.sqrt(2 * np.pi) * sigma / 2.0 * 1.6)


def _bezier(p0, p1, p2, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 1.0, max(n_points, 2))[:, None]
    pts = (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)
    return pts[:, 0], pts[:, 1]


def _segment(p0, p1) -> tuple[np.ndarray, np.ndarray]:
    length = float(np.hypot(p1[0] - p0[0], p1[1] - p0[1]))
    t = np.linspace(0.0, 1.0, max(int(length * 2) + 2, 2))
    return p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1])


def _blend(rgb: np.ndarray, alpha: np.ndarray, colour) -> np.ndarray:
    a = alpha[..., None]
    return rgb * (1 - a) + a * np.asarray(colour, dtype=np.float64)


def _radius_table(rng: np.random.Generator, beta: float, amp: float, kmax: int = 12, samples: int = 1024):
    """Star-shaped radius profile on ``samples`` angles, and its traced (k <= 8) version, both relative to R0."""
    k = np.arange(2, kmax + 1)
    a = amp * (k / 2.0) ** (-beta) * np.abs(rng.normal(1.0, 0.35, k.size))
    phi = rng.uniform(0, 2 * np.pi, k.size)
    theta = np.linspace(-np.pi, np.pi, samples, endpoint=False)
    terms = a[:, None] * np.cos(k[:, None] * theta[None] + phi[:, None])
    full = 1.0 + terms.sum(0)
    traced = 1.0 + terms[k <= 8].sum(0)
    return np.maximum(full, 0.3), np.maximum(traced, 0.3), float(np.abs(a).sum())


def render_skin(rng: np.random.Generator, size: int | Sequence[int] = 256, label: int | None = None,
                prevalence: Sequence[float] = SKIN_PREVALENCE) -> tuple[np.ndarray, np.ndarray, int, dict]:
    """Render one dermoscopy phantom.

    Args:
        rng: the image's random stream (all randomness is drawn from it).
        size: side length in pixels (int or a square ``(H, W)``), at least 32.
        label: 0 nevus, 1 seborrheic keratosis, 2 melanoma, or None to draw it from ``prevalence``.
        prevalence: class probabilities used when ``label`` is None.

    Returns:
        ``(rgb, mask, label, attributes)``: uint8 (H, W, 3) image, uint8 (H, W) lesion mask of 0/1 (the
        human-like tracing), the class, and a dict of the drawn attributes (numbers and booleans).
    """
    if not isinstance(size, (int, np.integer)):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"size must be an int or a square (H, W), got {size!r}.")
        size = size[0]
    n = int(size)
    if n < 32:
        raise ValueError(f"size must be >= 32 pixels, got {n!r}.")
    if label is None:
        p = np.asarray(prevalence, dtype=np.float64)
        label = int(rng.choice(3, p=p / p.sum()))
    if label not in SKIN_CLASSES:
        raise ValueError(f"label must be one of {sorted(SKIN_CLASSES)}, got {label!r}.")
    label = int(label)
    px = n / 256.0  # pixels at this size per pixel at 256²
    coords = (np.arange(n) + 0.5) / n * 2.0 - 1.0  # field coordinates in [-1, 1]
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    to_px = n / 2.0  # field units -> pixels
    att: dict = {"label": label}

    # ---- skin: tone (class-independent), hue, illumination, pores
    tone = float(rng.beta(1.6, 2.2))
    skin = _SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone
    skin = skin * np.exp(rng.normal(0.0, [0.03, 0.04, 0.05]))  # redness / hue jitter
    att["skin_tone"] = tone
    angle = rng.uniform(0, 2 * np.pi)
    gradient = rng.uniform(0.0, 0.3)
    illum = 1.0 + gradient * (np.cos(angle) * xx + np.sin(angle) * yy) / 1.4
    illum = illum * (1.0 + rng.uniform(0.02, 0.07) * _field(rng, n, 3))
    illum = illum * (1.0 - rng.uniform(0.0, 0.12) * (xx**2 + yy**2))  # the dermatoscope's radial fall-off
    att["illumination_gradient"] = gradient
    pores = ndimage.gaussian_filter(rng.standard_normal((n, n)), 0.7 * px)
    pores = pores / (pores.std() + 1e-12) * rng.uniform(0.01, 0.035)
    rgb = np.broadcast_to(skin, (n, n, 3)) * (1.0 + pores[..., None] + 0.03 * _field(rng, n, 8)[..., None])

    # ---- lesion geometry
    lo, hi = _BETA[label]
    beta = float(rng.uniform(lo, hi))
    amp = float(rng.uniform(*_IRREGULARITY[label]))
    area = float(np.clip(_AREA_MEDIAN[label] * np.exp(rng.normal(0.0, 0.4)), 0.05, 0.5))
    r0 = np.sqrt(4.0 * area / np.pi)  # the field [-1, 1]² has area 4
    cy, cx = rng.uniform(-0.3, 0.3, 2) * (1.0 - area)  # off-centre by up to 15% of the field
    full, traced, irregular = _radius_table(rng, beta, amp)
    rho = np.hypot(yy - cy, xx - cx)
    idx = ((np.arctan2(yy - cy, xx - cx) + np.pi) / (2 * np.pi) * full.size).astype(int) % full.size
    r_les = r0 * full[idx]
    edge = rng.uniform(*_EDGE_PX[label]) * px / to_px
    inside = (r_les - rho) / r_les.clip(1e-6)  # 1 at the centre, 0 on the border
    alpha = 1.0 / (1.0 + np.exp(-np.clip((r_les - rho) / edge, -30, 30)))
    att.update(area_target=area, beta=beta, irregularity=irregular, edge_px=edge * to_px, centre=[float(cy), float(cx)])

    # ---- pigment density: contrast, heterogeneity, asymmetry, radial profile
    contrast = float(rng.uniform(*_CONTRAST[label]))
    hetero = float(rng.uniform(*_HETEROGENEITY[label]))
    dens = 1.0 + hetero * _field(rng, n, int(rng.integers(3, 7)))
    if label == 2 or rng.random() < 0.15:  # asymmetric pigment: darker on one side
        side = rng.uniform(0, 2 * np.pi)
        dens = dens + hetero * 0.8 * (np.cos(side) * (xx - cx) + np.sin(side) * (yy - cy)) / r0
    dens = dens * (0.85 + 0.3 * np.clip(inside, 0, 1))  # slightly darker centre
    if rng.random() < _P_WAXY[label]:  # SK: waxy, cerebriform mottling
        dens = dens * (1.0 + 0.25 * _bandpass(rng, n, 1.5 * px))
        att["waxy"] = True
    else:
        att["waxy"] = False
    dens = np.clip(dens, 0.05, 2.0) * alpha
    absorb = _PIGMENT[label] * np.exp(rng.normal(0.0, 0.04, 3))
    lesion_rgb = rgb * (1.0 - np.clip(contrast * dens[..., None] * absorb, 0, 0.95))
    att["contrast"] = contrast
    att["heterogeneity"] = hetero

    # pigment network: reticular band-pass texture, typical (regular) or atypical (thick, patchy)
    att["network"] = bool(rng.random() < _P_NETWORK[label])
    if att["network"]:
        bp = _bandpass(rng, n, rng.uniform(1.2, 2.2) * px)
        thick = 0.3 if label != 2 else 0.3 + 0.5 * _field(rng, n, 4)
        lines = np.clip((bp - thick) * 1.5, 0, 1) * alpha * np.clip(0.4 + inside, 0, 1)
        lesion_rgb = lesion_rgb * (1.0 - 0.35 * contrast * lines[..., None] * absorb)

    # second pigment component: black / dark brown blotches
    att["black"] = bool(rng.random() < _P_BLACK[label])
    if att["black"]:
        blot = np.clip(_field(rng, n, 5) - rng.uniform(0.3, 1.2), 0, 1) * alpha
        lesion_rgb = _blend(lesion_rgb, 0.8 * blot, (0.12, 0.08, 0.08))

    # dots and globules: central and regular (nevus) or scattered to the periphery (melanoma)
    att["dots"] = bool(rng.random() < _P_DOTS[label])
    if att["dots"]:
        m = int(rng.integers(5, 40))
        theta = rng.uniform(0, 2 * np.pi, m)
        reach = rng.uniform(0.0, 0.6 if label != 2 else 1.0, m)
        rr = r0 * np.sqrt(reach) * full[((theta / (2 * np.pi)) * full.size).astype(int) % full.size]
        dy, dx = (cy + rr * np.sin(theta) + 1) * to_px, (cx + rr * np.cos(theta) + 1) * to_px
        d = _dots_alpha(n, dy, dx, rng.uniform(1.0, 3.5) * px)
        lesion_rgb = _blend(lesion_rgb, 0.85 * d, skin * 0.25)

    # regression: white scar-like areas
    att["regression"] = bool(rng.random() < _P_REGRESSION[label])
    if att["regression"]:
        reg = np.clip((_field(rng, n, 6) - rng.uniform(0.5, 1.3)) * 1.5, 0, 1) * alpha
        lesion_rgb = _blend(lesion_rgb, 0.75 * reg, np.clip(skin * 1.12 + 0.04, 0, 1))

    # blue-white veil
    att["veil"] = bool(rng.random() < _P_VEIL[label])
    if att["veil"]:
        veil = np.clip((_field(rng, n, 4) - rng.uniform(-0.3, 0.7)), 0, 1) * alpha
        lum = float(skin.mean())
        lesion_rgb = _blend(lesion_rgb, 0.7 * veil, (0.42 * lum, 0.5 * lum, 0.68 * lum))

    # milia-like cysts: small bright dots
    att["milia"] = bool(rng.random() < _P_MILIA[label])
    if att["milia"]:
        m = int(rng.integers(3, 20))
        theta = rng.uniform(0, 2 * np.pi, m)
        rr = r0 * np.sqrt(rng.uniform(0, 0.8, m))
        d = _dots_alpha(n, (cy + rr * np.sin(theta) + 1) * to_px, (cx + rr * np.cos(theta) + 1) * to_px,
                        rng.uniform(1.0, 2.5) * px)
        lesion_rgb = _blend(lesion_rgb, 0.9 * d * alpha, np.clip(skin * 1.1 + 0.08, 0, 1) * [1.0, 1.0, 0.9])

    rgb = lesion_rgb
    # streaks at the border (radial lines crossing it)
    att["streaks"] = bool(rng.random() < _P_STREAKS[label])
    if att["streaks"]:
        m = int(rng.integers(6, 25))
        start = rng.uniform(0, 2 * np.pi)
        theta = start + rng.uniform(0, rng.uniform(1.0, 2 * np.pi), m)
        curves = []
        for t in theta:
            rb = r0 * full[int((t % (2 * np.pi)) / (2 * np.pi) * full.size) % full.size]
            a, b = rb * rng.uniform(0.75, 0.95), rb * rng.uniform(1.05, 1.25)
            p0 = ((cy + a * np.sin(t) + 1) * to_px, (cx + a * np.cos(t) + 1) * to_px)
            p1 = ((cy + b * np.sin(t) + 1) * to_px, (cx + b * np.cos(t) + 1) * to_px)
            curves.append(_segment(p0, p1))
        s = _strokes_alpha(n, curves, rng.uniform(1.0, 2.5) * px)
        rgb = _blend(rgb, 0.8 * s, skin * (1 - contrast) * 0.5)

    # ---- distractors: hairs, ruler marks, bubbles, colour calibration patches
    att["hairs"] = 0
    if rng.random() < 0.3:
        m = int(rng.integers(1, 16))
        curves = []
        for _ in range(m):
            p0, p2 = rng.uniform(-0.2, 1.2, 2) * n, rng.uniform(-0.2, 1.2, 2) * n
            p1 = (p0 + p2) / 2 + rng.normal(0, 0.15 * n, 2)
            curves.append(_bezier(p0, p1, p2, int(2.2 * np.hypot(*(p2 - p0))) + 2))
        h = _strokes_alpha(n, curves, rng.uniform(0.8, 2.5) * px)
        rgb = _blend(rgb, rng.uniform(0.7, 1.0) * h, skin * rng.uniform(0.1, 0.3))
        att["hairs"] = m
    att["ruler"] = bool(rng.random() < 0.05)
    if att["ruler"]:
        edge_side = int(rng.integers(4))
        pos = rng.uniform(0.03, 0.1) * n
        step = rng.uniform(0.03, 0.06) * n
        curves = []
        for j, t in enumerate(np.arange(rng.uniform(0, step), n, step)):
            length = (0.06 if j % 5 == 0 else 0.03) * n
            a, b = (t, pos), (t, pos + length)
            if edge_side % 2:
                a, b = (a[1], a[0]), (b[1], b[0])
            if edge_side >= 2:
                a, b = (n - 1 - a[0], n - 1 - a[1]), (n - 1 - b[0], n - 1 - b[1])
            curves.append(_segment(a, b))
        rgb = _blend(rgb, 0.9 * _strokes_alpha(n, curves, 1.2 * px), (0.08, 0.08, 0.1))
    att["bubbles"] = 0
    if rng.random() < 0.07:
        m = int(rng.integers(1, 6))
        for _ in range(m):
            by, bx = rng.uniform(0, n, 2)
            br = rng.uniform(0.02, 0.1) * n
            d = np.hypot(np.arange(n)[:, None] - by, np.arange(n)[None, :] - bx)
            rim = np.exp(-(((d - br) / (0.8 * px + 0.5)) ** 2))
            rgb = _blend(rgb, 0.6 * rim, (0.15, 0.15, 0.15))
            glint = np.exp(-((np.hypot(np.arange(n)[:, None] - by + 0.4 * br, np.arange(n)[None, :] - bx + 0.3 * br)
                              / (0.25 * br)) ** 2))
            rgb = _blend(rgb, 0.8 * glint, (1.0, 1.0, 1.0))
        att["bubbles"] = m
    att["patches"] = bool(rng.random() < 0.05)
    if att["patches"]:
        corner = rng.integers(2, size=2)
        w = int(0.08 * n)
        for j, colour in enumerate(rng.permutation([(0.8, 0.1, 0.1), (0.1, 0.6, 0.2), (0.1, 0.2, 0.8),
                                                    (0.9, 0.9, 0.1), (0.1, 0.1, 0.1)])):
            y0 = 2 + j * (w + 2) if not corner[0] else n - 2 - (j + 1) * (w + 2)
            x0 = 2 if not corner[1] else n - 2 - w
            if 0 <= y0 and y0 + w <= n:
                rgb[y0:y0 + w, x0:x0 + w] = colour

    # ---- illumination and dermoscopy vignetting (dark circular border in 40% of the images)
    rgb = rgb * illum[..., None]
    att["vignetting"] = bool(rng.random() < 0.4)
    if att["vignetting"]:
        rv = rng.uniform(1.0, 1.45)
        width = rng.uniform(0.02, 0.12)
        outside = 1.0 / (1.0 + np.exp(-np.clip((np.hypot(yy, xx) - rv) / width, -30, 30)))
        rgb = rgb * (1.0 - (1.0 - rng.uniform(0.03, 0.2)) * outside[..., None])
    rgb = rgb + rng.normal(0.0, 0.008, rgb.shape)  # sensor noise
    image = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)

    # ---- mask: a human tracing of the lesion (low harmonics + a few pixels of smooth disagreement)
    k = np.arange(1, 7)
    jitter_px = rng.uniform(1.0, 3.0) * px
    b = rng.normal(0.0, jitter_px / k)
    psi = rng.uniform(0, 2 * np.pi, k.size)
    theta = np.linspace(-np.pi, np.pi, traced.size, endpoint=False)
    wobble = (b[:, None] * np.cos(k[:, None] * theta[None] + psi[:, None])).sum(0) + rng.uniform(-0.5, 1.5) * px
    r_mask = r0 * traced[idx] + wobble[idx] / to_px
    mask = (rho < r_mask).astype(np.uint8)
    if not mask.any():  # never an empty mask
        mask[int((cy + 1) * to_px), int((cx + 1) * to_px)] = 1
    att["area_fraction"] = float(mask.mean())
    att["trace_jitter_px"] = float(jitter_px)
    return image, mask, label, att


def _save_png(array: np.ndarray, path: Path) -> None:
    """PNG written atomically; zlib level 1 (the noisy images barely compress: 3x faster, 15% larger)."""
    atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG", compress_level=1))


def _job(args) -> tuple[dict | None, dict | None, str | None]:
    out, sid, seed, stream, index, size, label, prevalence = args
    try:
        rgb, mask, lab, att = render_skin(np.random.default_rng([seed, stream, index]), size, label, prevalence)
        img, msk = Path("images") / f"{sid}.png", Path("masks") / f"{sid}.png"
        _save_png(rgb, out / img)
        _save_png(mask, out / msk)
        rec = {"image": str(img), "mask": str(msk), "subject_id": sid}
        if label is not None:
            rec["label"] = lab
        return rec, att, None
    except Exception as e:  # a batch job reports the failing item and finishes the rest
        return None, None, f"{sid}: {type(e).__name__}: {e}"


def _exact_labels(n: int, prevalence: Sequence[float], rng: np.random.Generator) -> list[int]:
    """``n`` labels with class counts as close to ``prevalence`` as integers allow, in a random order."""
    p = np.asarray(prevalence, dtype=np.float64) / float(np.sum(prevalence))
    counts = np.floor(p * n).astype(int)
    for j in np.argsort(-(p * n - counts), kind="stable")[: n - counts.sum()]:
        counts[j] += 1
    labels = np.repeat(np.arange(len(p)), counts)
    return [int(v) for v in labels[rng.permutation(n)]]


def _resolve(preset: str | None, overrides: dict) -> dict:
    if preset is not None and preset not in SKIN_PRESETS:
        raise ValueError(f"preset must be one of {sorted(SKIN_PRESETS)} or None, got {preset!r}.")
    unknown = sorted(set(overrides) - set(_PARAMS))
    if unknown:
        raise ValueError(f"unknown skin cohort parameters {unknown}; expected some of {list(_PARAMS)}.")
    kw = {"prevalence": SKIN_PREVALENCE, **(SKIN_PRESETS[preset] if preset else {}), **overrides}
    missing = [k for k in _PARAMS if k not in kw]
    if missing:
        raise ValueError(f"without a preset, give {missing}.")
    for k in ("training", "validation", "test", "unlabeled"):
        if not isinstance(kw[k], (int, np.integer)) or kw[k] < 0:
            raise ValueError(f"{k} must be an integer >= 0, got {kw[k]!r}.")
        kw[k] = int(kw[k])
    if kw["training"] + kw["validation"] + kw["test"] + kw["unlabeled"] == 0:
        raise ValueError("the cohort would be empty: training, validation, test and unlabeled are all 0.")
    if not isinstance(kw["size"], (int, np.integer)) or not 32 <= kw["size"] <= 4096:
        raise ValueError(f"size must be an integer in [32, 4096] pixels, got {kw['size']!r}.")
    kw["size"] = int(kw["size"])
    prev = [float(v) for v in kw["prevalence"]]
    if len(prev) != 3 or min(prev) < 0 or sum(prev) <= 0:
        raise ValueError(f"prevalence must be three non-negative class shares, got {kw['prevalence']!r}.")
    kw["prevalence"] = [v / sum(prev) for v in prev]
    return kw


def generate_skin_cohort(out_dir: str | os.PathLike, preset: str | None = "quick", seed: int = 0,
                         workers: int | None = None, progress: bool = True, **overrides) -> Path:
    """Write the dermoscopy phantom cohort to ``out_dir`` and return the path of its ``datalist.json``.

    Args:
        out_dir: output folder (created); holds ``images/`` (RGB PNG), ``masks/`` (PNG, 0/1), ``datalist.json``,
            ``attributes.json`` (the drawn attributes of every image) and ``cohort.json`` (parameters, version).
        preset: one of ``SKIN_PRESETS`` ("tiny", "quick", "paper"), or None to give every parameter.
        seed: master seed; the same seed gives byte-identical files whatever ``workers``.
        workers: processes (default: all cores).
        progress: show a progress bar.
        overrides: ``training``, ``validation``, ``test`` (labelled images per split; the subject-wise split is
            stratified by class, so each size may differ from the request by rounding, at most one per class),
            ``unlabeled`` (images without a class), ``size`` (side in pixels), ``prevalence`` (class shares of
            nevus, seborrheic keratosis, melanoma; default ISIC-2017 training).
    """
    kw = _resolve(preset, overrides)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    n_lab = kw["training"] + kw["validation"] + kw["test"]
    labels = _exact_labels(n_lab, kw["prevalence"], np.random.default_rng([seed, 0]))
    size, prev = kw["size"], kw["prevalence"]
    jobs = [(out, f"DL{i + 1:05d}", seed, 20, i, size, lab, prev) for i, lab in enumerate(labels)]
    jobs += [(out, f"DU{i + 1:05d}", seed, 21, i, size, None, prev) for i in range(kw["unlabeled"])]
    done, failures = run_jobs(_job, jobs, workers, progress, "phantom skin cohort", "img", chunksize=8)
    records = [rec for rec, _ in done]
    attributes = {rec["subject_id"]: att for rec, att in done}
    lab = [r for r in records if "label" in r]
    unl = [r for r in records if "label" not in r]
    fractions = [kw[k] / n_lab for k in ("training", "validation", "test")] if n_lab else [1.0, 0.0, 0.0]
    split = subject_split([r["subject_id"] for r in lab], [r["label"] for r in lab], fractions, seed=seed)
    for r in lab:
        r["split"] = split[r["subject_id"]]
    for r in unl:
        r["split"] = "unlabeled"
    params = {"generator": "monai_osteo.data.phantoms.skin", "version": GENERATOR_VERSION, "preset": preset,
              "seed": seed, **kw}
    datalist = {
        "name": "monai_osteo phantom dermoscopy (ISIC-2017 analogue)",
        "description": "Synthetic dermoscopy images (RGB PNG) with one lesion each, its traced mask (PNG, 0/1) and "
                       "the class of the lesion; one image per subject. Paths are relative to this file.",
        "labels": {"0": "background", "1": "lesion"},
        "classes": {str(k): v for k, v in SKIN_CLASSES.items()},
        "generator": params,
        **{name: [r for r in lab if r["split"] == name] for name in ("training", "validation", "test")},
        "unlabeled": unl,
    }
    atomic_write_json(out / "attributes.json", attributes, indent=None, sort_keys=True)
    path = write_cohort(out, datalist, params, failures, len(jobs))
    logger.info("wrote %d labelled and %d unlabelled skin phantoms to %s", len(lab), len(unl), out)
    return path


def ensure_skin_cohort(out_dir: str | os.PathLike, preset: str | None = "quick", seed: int = 0,
                       **overrides) -> Path:
    """Return the datalist of a cached cohort in ``out_dir``, generating it first if absent or different.

    A cohort is reused when its ``cohort.json`` has this generator version, preset, seed and parameters and
    recorded no failure; ``workers`` and ``progress`` may be passed and are not compared.
    """
    run = {k: overrides.pop(k) for k in ("workers", "progress") if k in overrides}
    kw = _resolve(preset, overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # one generator at a time per folder (parallel runs, DDP ranks); the others then find it up to date
    with open(out / ".cohort.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            meta = out / "cohort.json"
            if meta.is_file() and (out / "datalist.json").is_file():
                have = json.loads(meta.read_text())
                want = {"generator": "monai_osteo.data.phantoms.skin", "version": GENERATOR_VERSION,
                        "preset": preset, "seed": seed, **kw}
                if not have.get("failures") and all(have.get(k) == v for k, v in want.items()):
                    return out / "datalist.json"
            return generate_skin_cohort(out, preset=preset, seed=seed, **run, **overrides)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
