"""Projection rendering of a phantom hand: attenuation line integrals, detector, display processing.

Each solid contributes mu * chord length to the attenuation image (Beer–Lambert line integral through
an elliptic cylinder or ellipsoid), so cortical shells appear as bright rims, overlapping bones add up,
and the trabecular texture is a band-pass random field thresholded to the subject's trabecular
fraction. The detector adds blur and quantum noise; display processing windows each image to its own
percentiles with a random gamma, as computed-radiography auto-ranging does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import expit, ndtri

from monai_osteo.data.phantoms.anatomy import Ellipsoid, Hand, Tube

__all__ = ["RenderedHand", "render_hand"]

MU_BONE = 0.10  # 1/mm, cortical bone
MU_SOFT = 0.02  # 1/mm, soft tissue
MU_METAL = 1.2  # 1/mm, ring
TRAB_MU = 0.6  # trabecular struts relative to cortical bone (projected, partial volume)


@dataclass
class RenderedHand:
    image: np.ndarray  # (H, W) uint16, bone bright
    truth: np.ndarray  # (H, W) uint8 label map of the 7 target bones
    annotators: list  # M x (H, W) uint8 label maps
    weights: list  # M annotator weights beta, summing to 1
    acquisition: dict  # JSON-able exposure / processing parameters
    all_bones: np.ndarray | None = None  # (H, W) uint8 0/1 mask of every rendered bone (carpals, phalanges included)


def _chord(radius, d):
    return 2.0 * np.sqrt(np.clip(radius * radius - d * d, 0.0, None))


def _window(shape, sp: float, lo_mm, hi_mm):
    """Pixel slices and millimetre coordinate grids (X, Y) of a bounding box, or None if outside."""
    r0 = max(int(np.floor(lo_mm[1] / sp)), 0)
    r1 = min(int(np.ceil(hi_mm[1] / sp)) + 1, shape[0])
    c0 = max(int(np.floor(lo_mm[0] / sp)), 0)
    c1 = min(int(np.ceil(hi_mm[0] / sp)) + 1, shape[1])
    if r1 <= r0 or c1 <= c0:
        return None
    ys = (np.arange(r0, r1) + 0.5) * sp
    xs = (np.arange(c0, c1) + 0.5) * sp
    return (slice(r0, r1), slice(c0, c1)), xs[None, :], ys[:, None]


def _tube_geometry(tube: Tube, xs, ys):
    """Axial position (clamped), distance to the axis, length and local outer radius of a tube."""
    p0, p1 = np.asarray(tube.p0), np.asarray(tube.p1)
    length = float(np.linalg.norm(p1 - p0))
    u = (p1 - p0) / length
    t = np.clip((xs - p0[0]) * u[0] + (ys - p0[1]) * u[1], 0.0, length)
    d = np.hypot(xs - (p0[0] + t * u[0]), ys - (p0[1] + t * u[1]))
    w = max(0.2 * length, 3.0)
    flare = tube.flare0 * np.exp(-((t / w) ** 2)) + tube.flare1 * np.exp(-(((length - t) / w) ** 2))
    radius = tube.radius * (1.0 + flare)
    return t, d, length, radius


def _tube_box(tube: Tube, pad: float):
    reach = tube.radius * (1.0 + max(tube.flare0, tube.flare1, 0.0)) + pad
    pts = np.array([tube.p0, tube.p1])
    return pts.min(0) - reach, pts.max(0) + reach


def _trabeculae(field, fraction):
    """Trabecular network: the zero-level ridges of a band-pass field, thickened to ``fraction`` of the area.

    ``|field| < tau`` with ``P(|Z| < tau) = fraction`` draws a connected mesh at high fraction that breaks
    into struts and dots as the fraction drops, which is what osteoporotic trabecular bone looks like.
    """
    tau = ndtri(0.5 + 0.5 * np.clip(fraction, 1e-3, 0.95))
    return expit((tau - np.abs(field)) / 0.08)


def _bone_tube(tube: Tube, xs, ys, field):
    t, d, length, radius = _tube_geometry(tube, xs, ys)
    we = 0.28 * length
    shaft = 1.0 - np.maximum(np.exp(-((t / we) ** 2)), np.exp(-(((length - t) / we) ** 2)))
    ci = tube.cortical_index * shaft + 0.12 * (1.0 - shaft)
    inner = radius * (1.0 - ci)
    frac = np.clip(tube.trabecular * (0.2 * shaft + (1.0 - shaft)), 1e-3, 0.95)
    canal = _chord(inner, d)
    atten = MU_BONE * (tube.density * (_chord(radius, d) - canal) + TRAB_MU * canal * _trabeculae(field, frac))
    return atten, d - radius


def _bone_ellipsoid(ell: Ellipsoid, xs, ys, field):
    a = np.deg2rad(ell.angle)
    dx, dy = xs - ell.center[0], ys - ell.center[1]
    u = (dx * np.cos(a) + dy * np.sin(a)) / ell.a
    v = (-dx * np.sin(a) + dy * np.cos(a)) / ell.b
    rho = np.sqrt(u * u + v * v)
    k = 1.0 - ell.cortical_index
    outer = ell.c * _chord(1.0, rho)
    inner = ell.c * k * _chord(1.0, rho / k)
    return MU_BONE * (ell.density * (outer - inner) + TRAB_MU * inner * _trabeculae(field, ell.trabecular))


def _smooth_field(rng, shape, sp: float, corr_mm: float) -> np.ndarray:
    """Zero-mean unit-variance random field with correlation length ``corr_mm`` at any resolution."""
    step = max(int(round(corr_mm / sp)), 1)
    coarse = rng.normal(size=(shape[0] // step + 3, shape[1] // step + 3))
    coarse = ndimage.gaussian_filter(coarse, 1.0)
    fine = ndimage.zoom(coarse, step, order=1)[: shape[0], : shape[1]]
    return fine / max(float(fine.std()), 1e-6)


def _texture_field(rng, shape, sp: float) -> np.ndarray:
    """Band-pass noise (0.5–1.5 mm structures), unit variance: projected trabecular pattern."""
    noise = rng.normal(size=shape)
    band = ndimage.gaussian_filter(noise, 0.5 / sp) - ndimage.gaussian_filter(noise, 1.5 / sp)
    return band / max(float(band.std()), 1e-6)


def render_hand(hand: Hand, shape: tuple[int, int], spacing: float, rng: np.random.Generator,
                annotators: int = 3) -> RenderedHand:
    """Render one radiograph with its ground-truth and annotator label maps.

    Args:
        hand: solids in image millimetres from :func:`place_hand`.
        shape: (H, W) in pixels.
        spacing: pixel size in millimetres (isotropic).
        rng: generator for texture, acquisition and annotators.
        annotators: number M of annotator masks.
    """
    sp = float(spacing)
    atten = np.zeros(shape, dtype=np.float64)
    soft = np.zeros(shape, dtype=np.float64)
    field = _texture_field(rng, shape, sp)
    for s in hand.soft:
        win = _window(shape, sp, *_tube_box(s, 1.0))
        if win is None:
            continue
        sl, xs, ys = win
        _, d, _, radius = _tube_geometry(s, xs, ys)
        thick = s.depth * _chord(1.0, d / radius)
        soft[sl] = np.maximum(soft[sl], thick)
    # acquisition: tube voltage changes bone-to-soft-tissue contrast, body habitus the soft-tissue load
    bone_contrast, soft_load = float(rng.uniform(0.8, 1.2)), float(rng.uniform(0.8, 1.3))
    atten += MU_SOFT * soft_load * soft
    bone_atten = np.zeros(shape, dtype=np.float64)

    truth = np.zeros(shape, dtype=np.uint8)
    all_bones = np.zeros(shape, dtype=bool)
    signed = []  # (slice, signed distance, label) of target bones, in drawing order
    for b in hand.bones:
        if isinstance(b, Tube):
            win = _window(shape, sp, *_tube_box(b, 1.0))
            if win is None:
                continue
            sl, xs, ys = win
            a, sd = _bone_tube(b, xs, ys, field[sl])
            if b.label:
                signed.append((sl, sd, b.label))
                truth[sl][sd < 0] = b.label
        else:
            reach = max(b.a, b.b) + 1.0
            win = _window(shape, sp, np.asarray(b.center) - reach, np.asarray(b.center) + reach)
            if win is None:
                continue
            sl, xs, ys = win
            a = _bone_ellipsoid(b, xs, ys, field[sl])
        bone_atten[sl] += a
        all_bones[sl] |= a > 0
    atten += bone_contrast * bone_atten

    acq: dict = {"ring": hand.ring is not None, "missing_bones": list(hand.missing), "laterality": hand.laterality}
    if hand.ring is not None:
        phalanx, pos = hand.ring
        win = _window(shape, sp, *_tube_box(phalanx, 8.0))
        if win is not None:
            sl, xs, ys = win
            t, d, length, radius = _tube_geometry(phalanx, xs, ys)
            band = np.abs(t - pos * length) < 1.6
            r_in = phalanx.radius + 2.8
            atten[sl] += MU_METAL * band * (_chord(r_in + 1.3, d) - _chord(r_in, d))
    _add_marker(atten, sp, rng, hand.laterality)
    exposed = _collimation(shape, sp, rng, acq)
    atten[~exposed] += 3.5

    blur_mm = float(rng.uniform(0.12, 0.4))
    atten = ndimage.gaussian_filter(atten, blur_mm / sp)
    photons = float(rng.uniform(600.0, 5000.0) * (sp / 0.38) ** 2)
    counts = photons * np.exp(-atten)
    counts = counts + np.sqrt(counts) * rng.normal(size=shape)
    measured = -np.log(np.clip(counts, 0.5, None) / photons)
    lo, hi = np.percentile(measured[exposed], [0.5, 99.7])
    span = hi - lo
    lo, hi = lo - rng.uniform(0.0, 0.15) * span, hi + rng.uniform(-0.05, 0.2) * span
    gamma = float(rng.uniform(0.75, 1.3))
    display = np.clip((measured - lo) / max(hi - lo, 1e-6), 0.0, 1.0) ** gamma
    image = np.round(display * 65535.0).astype(np.uint16)
    acq.update(blur_mm=round(blur_mm, 4), photons_per_pixel=round(photons, 2), gamma=round(gamma, 4),
               bone_contrast=round(bone_contrast, 4), soft_tissue_load=round(soft_load, 4))

    masks, weights = _annotate(signed, shape, sp, rng, annotators)
    return RenderedHand(image=image, truth=truth, annotators=masks, weights=weights, acquisition=acq,
                        all_bones=all_bones.astype(np.uint8))


def _annotate(signed, shape, sp: float, rng, m: int):
    """M annotators: each shifts every boundary by a personal bias plus a smooth wobble (millimetres)."""
    masks, bias = [], rng.normal(0.0, 0.22, size=m)
    for j in range(m):
        wobble = 0.3 * _smooth_field(rng, shape, sp, 4.0)
        lab = np.zeros(shape, dtype=np.uint8)
        for sl, sd, label in signed:
            lab[sl][sd < bias[j] + wobble[sl]] = label
        masks.append(lab)
    w = np.exp(-np.abs(bias) / 0.2)
    w = np.round(w / w.sum(), 4)
    w[-1] = round(1.0 - float(w[:-1].sum()), 4)
    return masks, [float(x) for x in w]


def _add_marker(atten, sp: float, rng, laterality: str) -> None:
    """Lead side marker ("L"-shaped block) in a top corner."""
    h, w = atten.shape
    size = max(int(round(10.0 / sp)), 3)
    r0 = int(round(rng.uniform(0.02, 0.06) * h))
    c0 = int(round(rng.uniform(0.03, 0.08) * w)) if rng.random() < 0.5 else w - size - int(round(0.05 * w))
    bar = max(size // 4, 1)
    atten[r0:r0 + size, c0:c0 + bar] += 2.5
    if laterality == "L":
        atten[r0 + size - bar:r0 + size, c0:c0 + size // 2 + bar] += 2.5
    else:
        atten[r0:r0 + bar, c0:c0 + size // 2 + bar] += 2.5
        atten[r0 + size // 2 - bar // 2:r0 + size // 2 + bar, c0:c0 + size // 2 + bar] += 2.5


def _collimation(shape, sp: float, rng, acq: dict) -> np.ndarray:
    """Exposed field: the whole detector, or (60%) a slightly rotated collimated rectangle."""
    h, w = shape
    if rng.random() >= 0.6:
        acq["collimated"] = False
        return np.ones(shape, dtype=bool)
    acq["collimated"] = True
    ang = np.deg2rad(rng.uniform(-3.0, 3.0))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    xs, ys = xs - w / 2, ys - h / 2
    u = xs * np.cos(ang) + ys * np.sin(ang)
    v = -xs * np.sin(ang) + ys * np.cos(ang)
    m = rng.uniform(0.0, 0.06, size=4)
    return (u > -w / 2 * (1 - 2 * m[0])) & (u < w / 2 * (1 - 2 * m[1])) & (v > -h / 2 * (1 - 2 * m[2])) & (
        v < h / 2 * (1 - 2 * m[3]))
