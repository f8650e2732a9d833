"""Render one phantom patient's thoraco-lumbar CT (HU) and its VerSe vertebra label map.

World frame RAS+ (mm): +x towards the patient's right, +y anterior, +z superior; array axes follow it
(affine diagonal-positive). Each vertebral body is drawn on a fine grid (the output grid subdivided, so the
slice profile is the box average over the slice) in its own frame (sagittal tilt of the spinal curve,
coronal tilt, axial rotation): a kidney-shaped body with concave endplates, a cortical shell, and a 3-D
trabecular network — the thin level set ``|f| < t`` of an anisotropic band-pass random field, i.e. a web of
plates whose thickness and connectivity fall with BV/TV (≈ vBMD / 1100) and whose spacing and vertical
anisotropy grow as bone is lost (horizontal struts go first) — in marrow whose HU falls with fat. Posterior
elements, discs, canal, muscles, aorta and fat are drawn at the output resolution with partial-volume edges.
Then the scanner: HU gain/offset of the vendor, in-plane PSF, slice profile, correlated noise; int16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage
from scipy.special import erfinv

from monai_osteo.data.phantoms.vertebra.biology import Patient, VertebraTruth
from monai_osteo.data.phantoms.vertebra.levels import LEVELS, VERSE_LABELS

__all__ = ["HU", "RenderedCT", "render_patient"]

#: tissue CT numbers (HU) before the scanner's calibration
HU = {"fat": -90.0, "muscle": 50.0, "blood": 40.0, "disc": 80.0, "csf": 15.0, "bone_tissue": 1100.0,
      "cortex": 900.0, "red_marrow": 40.0, "fat_marrow": -100.0, "posterior": 320.0, "osteophyte": 650.0}
_FOV_X = (-35.0, 35.0)  # mm, left-right extent of the field of view (centred on the spine)
_FOV_Y = (-68.0, 34.0)  # mm, posterior -> anterior


@dataclass
class RenderedCT:
    """A rendered CT: int16 HU volume, uint8 VerSe label map, the 4x4 RAS affine and per-vertebra truth."""

    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    vertebrae: list[dict]


def _rot(theta: float, phi: float, psi: float) -> np.ndarray:
    """Rotation (columns = the vertebra's width, depth, height axes in world) from sagittal, coronal, axial angles."""
    ct, st, cp, sp, cs, ss = np.cos(theta), np.sin(theta), np.cos(phi), np.sin(phi), np.cos(psi), np.sin(psi)
    rx = np.array([[1, 0, 0], [0, ct, -st], [0, st, ct]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cs, -ss, 0], [ss, cs, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _layout(patient: Patient, rng: np.random.Generator) -> list[dict]:
    """Centres (mm) and frames of the visible vertebrae, caudal to cranial, following a kyphotic/lordotic curve."""
    out, z, y = [], 0.0, 0.0
    prev = None
    for v in reversed(patient.vertebrae):
        pos = LEVELS.index(v.level) + 1
        theta = np.deg2rad(np.interp(pos, [1, 7, 12, 15, 18], [14, 0, -8, 2, 18]) + rng.normal(0, 3))
        frame = _rot(theta, np.deg2rad(rng.normal(0, 3)), np.deg2rad(rng.normal(0, 3)))
        disc = float(np.interp(pos, [1, 12, 13, 18], [4.0, 6.0, 8.5, 10.0]) * rng.uniform(0.85, 1.15))
        if prev is not None:
            step = prev["size"][2] / 2 + prev["disc_above"] + v.size[2] / 2
            axis = prev["frame"][:, 2] + frame[:, 2]
            axis /= np.linalg.norm(axis)
            y += step * axis[1]
            z += step * axis[2]
        out.append({"truth": v, "centre": np.array([rng.normal(0, 1.0), y, z]), "frame": frame,
                    "size": np.asarray(v.size, dtype=float), "disc_above": disc})
        prev = out[-1]
    return out[::-1]


def _band_pass(rng, shape, spacing, frame, bands) -> list[np.ndarray]:
    """Unit-variance band-pass fields on a world grid from one white noise, one per ``(scale_mm, anisotropy)``.

    Correlation is ``anisotropy`` times longer along the vertebra's height axis (``frame[:, 2]``) than across.
    """
    noise = rng.standard_normal(shape, dtype=np.float32)
    spec = sfft.rfftn(noise, workers=1)
    ks = [sfft.fftfreq(n, d) for n, d in zip(shape[:-1], spacing[:-1])] + [sfft.rfftfreq(shape[-1], spacing[-1])]
    kx, ky, kz = np.meshgrid(*[2 * np.pi * k.astype(np.float32) for k in ks], indexing="ij", sparse=True)
    f = [[float(x) for x in row] for row in frame]  # python floats keep the float32 arithmetic in float32
    ku = f[0][0] * kx + f[1][0] * ky + f[2][0] * kz
    kv = f[0][1] * kx + f[1][1] * ky + f[2][1] * kz
    kw = f[0][2] * kx + f[1][2] * ky + f[2][2] * kz
    across = ku * ku + kv * kv
    fields = []
    for scale_mm, anisotropy in bands:
        q = across + kw * kw * float(anisotropy) ** 2
        lo, hi = float(scale_mm / 2.0) ** 2, float(scale_mm * 1.5) ** 2
        field = sfft.irfftn(spec * (np.exp(-0.5 * lo * q) - np.exp(-0.5 * hi * q)), s=shape, workers=1)
        fields.append(field / max(float(field.std()), 1e-6))
    return fields


def _body(item: dict, grid: tuple, fine: tuple, rng: np.random.Generator, marrow_hu: float):
    """Occupancy and HU sum of one vertebral body (+ osteophytes), block-averaged to the output grid."""
    v: VertebraTruth = item["truth"]
    (x0, y0, z0), sp, shape, k = grid  # output origin, spacing, shape; fine factors
    half = np.abs(item["frame"]) @ (item["size"] / 2 + 4.0)  # world half-extent of the body (+ spurs)
    lo = np.floor((item["centre"] - half - np.array([x0, y0, z0])) / sp).astype(int)
    hi = np.ceil((item["centre"] + half - np.array([x0, y0, z0])) / sp).astype(int) + 1
    lo, hi = np.maximum(lo, 0), np.minimum(hi, shape)
    if np.any(hi <= lo):
        return None
    fsp = sp / np.asarray(k)
    fshape = tuple(int(n) for n in (hi - lo) * np.asarray(k))
    axes = [np.float32(o) + (lo[i] * sp[i] - sp[i] / 2 + fsp[i] / 2 + np.arange(fshape[i]) * fsp[i]).astype(np.float32)
            for i, o in enumerate((x0, y0, z0))]
    rel = [a - np.float32(c) for a, c in zip(axes, item["centre"])]
    f = item["frame"].astype(np.float32)
    gx, gy, gz = np.meshgrid(*rel, indexing="ij", sparse=True)
    u = f[0, 0] * gx + f[1, 0] * gy + f[2, 0] * gz
    vv = f[0, 1] * gx + f[1, 1] * gy + f[2, 1] * gz
    w = f[0, 2] * gx + f[1, 2] * gy + f[2, 2] * gz
    a, b, h = (item["size"] / 2).astype(np.float32)
    r = np.sqrt((u / a) ** 2 + (vv / b) ** 2)
    notch = (u / (0.3 * a)) ** 2 + ((vv + b) / (0.2 * b)) ** 2 < 1  # posterior concavity (kidney shape)
    top = h - 1.2 * np.clip(1 - r * r, 0, 1)  # concave endplates
    depth_side = (1 - r) * min(a, b)
    depth_end = top - np.abs(w)
    depth = np.minimum(depth_side, depth_end)
    inside = (depth > 0) & ~notch
    # trabecular network: |f| < t with BV/TV = P(|f| < t) for a Gaussian field -> t from the inverse erf
    # bone loss: spacing and vertical anisotropy grow, and resorption becomes patchy (millimetre-scale holes)
    x = float(np.clip((v.texture_vbmd - 40.0) / 160.0, 0.0, 1.0))
    field, patches = _band_pass(rng, fshape, fsp, item["frame"], [(0.5 + 1.0 * (1 - x), 1.0 + 1.2 * (1 - x)),
                                                                  (2.5, 1.0)])
    bvtv = float(np.clip(v.texture_vbmd / HU["bone_tissue"], 0.01, 0.6))
    # patchy resorption: millimetre-scale BV/TV swings whose size in HU grows as bone is lost (marrow-only holes
    # where they reach zero), rescaled so the body's mean BV/TV (hence its mean HU) is kept
    amplitude = (25.0 + 85.0 * (1 - x)) / HU["bone_tissue"]
    local = np.clip(bvtv + amplitude * patches, 0.0, 0.9)
    local *= bvtv / max(float(local[inside].mean()) if inside.any() else bvtv, 1e-6)
    local = np.clip(local, 0.0, 0.9)
    bone = (np.abs(field) < np.sqrt(2.0) * erfinv(local)).astype(np.float32)
    trab = bone * HU["bone_tissue"] + (1 - bone) * marrow_hu + (v.vbmd - v.texture_vbmd)
    shell = depth < np.where(depth_end < depth_side, v.cortical_mm + 0.2, v.cortical_mm)
    hu = np.where(shell, HU["cortex"] * (0.75 + 0.25 * v.vbmd / 180.0), trab)
    occ = inside.astype(np.float32)
    if v.osteophyte:  # rim spurs at the antero-lateral endplate margins: bone outside the body, seen by DXA
        side = 1.0 if rng.random() < 0.5 else -1.0
        spur = ((np.abs(w) > h - 3.0) & (np.abs(w) < h + 0.5) & (r > 0.9) & (r < 1.0 + 3.5 / min(a, b))
                & (side * u > -0.2 * a) & (vv > -0.3 * b))
        spur &= ~inside
        hu = np.where(spur, HU["osteophyte"], hu)
        occ = np.maximum(occ, spur.astype(np.float32))
    kx, ky, kz = k
    n = (hi - lo)

    def block(x):
        return x.reshape(n[0], kx, n[1], ky, n[2], kz).mean(axis=(1, 3, 5))

    return tuple(slice(lo[i], hi[i]) for i in range(3)), block(occ), block(occ * hu)


def _soft(sdf: np.ndarray, voxel: float) -> np.ndarray:
    """Partial-volume occupancy from a signed distance (mm, negative inside)."""
    return np.clip(0.5 - sdf / voxel, 0.0, 1.0)


def _local(item: dict, grid: tuple, margin: float):
    """Output-grid window around a vertebra and the local (u, v, w) coordinates of its voxels."""
    (x0, y0, z0), sp, shape, _ = grid
    half = np.abs(item["frame"]) @ (np.array([30.0, 60.0, item["size"][2] / 2 + margin]))
    lo = np.maximum(np.floor((item["centre"] - half - np.array([x0, y0, z0])) / sp).astype(int), 0)
    hi = np.minimum(np.ceil((item["centre"] + half - np.array([x0, y0, z0])) / sp).astype(int) + 1, shape)
    axes = [o + (np.arange(lo[i], hi[i]) * sp[i]) - item["centre"][i] for i, o in enumerate((x0, y0, z0))]
    gx, gy, gz = np.meshgrid(*axes, indexing="ij", sparse=True)
    f = item["frame"]
    u = f[0, 0] * gx + f[1, 0] * gy + f[2, 0] * gz
    v = f[0, 1] * gx + f[1, 1] * gy + f[2, 1] * gz
    w = f[0, 2] * gx + f[1, 2] * gy + f[2, 2] * gz
    return tuple(slice(lo[i], hi[i]) for i in range(3)), u, v, w


def _posterior_sdf(item: dict, u, v, w) -> np.ndarray:
    """Signed distance (mm) of pedicles, arch, spinous and transverse processes (union = min)."""
    a, b, h = item["size"] / 2
    canal_v = -b - 8.0
    ped = np.maximum(np.sqrt((np.abs(u) - 0.55 * a) ** 2 + (w - 0.1 * h) ** 2) - 3.5,
                     np.maximum(v - (-b + 2.0), canal_v - v))
    rho = np.sqrt(u * u + (v - canal_v) ** 2)
    arch = np.maximum(np.maximum(np.abs(rho - 10.5) - 2.5, v - canal_v), np.abs(w) - 0.7 * h)
    spin = np.maximum(np.maximum(np.abs(u) - 3.0, np.abs(w + 0.25 * (v - canal_v + 13)) - 0.35 * h),
                      np.maximum(v - (canal_v - 11.0), (canal_v - 35.0) - v))
    trans = np.maximum(np.maximum(np.abs(v - canal_v) - 3.5, np.abs(w) - 4.0),
                       np.maximum(9.0 - np.abs(u), np.abs(u) - (14.0 + 0.25 * a)))
    return np.minimum(np.minimum(ped, arch), np.minimum(spin, trans))


def render_patient(patient: Patient, rng: np.random.Generator, fine_mm: float = 0.45) -> RenderedCT:
    """Render ``patient``'s CT (int16 HU, RAS array) and VerSe label map (uint8).

    Args:
        patient: the sampled patient (scan parameters and visible vertebrae).
        rng: the patient's random stream (continued from sampling).
        fine_mm: target spacing of the fine grid on which vertebral bodies are drawn (smaller = finer trabeculae,
            slower; the output grid is subdivided by whole factors).
    """
    items = _layout(patient, rng)
    sp = np.array([patient.inplane_mm, patient.inplane_mm, patient.slice_mm])
    zs = [it["centre"][2] for it in items]
    z_lo = min(zs) - items[-1]["size"][2] / 2 - items[-1]["disc_above"] - 4.0
    z_hi = max(zs) + items[0]["size"][2] / 2 + items[0]["disc_above"] + 4.0
    ys = [it["centre"][1] for it in items]  # the spinal curve moves bodies antero-posteriorly
    origin = np.array([_FOV_X[0], min(ys) + _FOV_Y[0], z_lo])
    shape = tuple(int(np.ceil(e / s)) for e, s in
                  zip((_FOV_X[1] - _FOV_X[0], _FOV_Y[1] - _FOV_Y[0] + max(ys) - min(ys), z_hi - z_lo), sp))
    k = tuple(max(1, int(np.ceil(s / fine_mm - 1e-6))) for s in sp)
    grid = (origin, sp, shape, k)
    voxel = float(np.mean(sp))
    # soft tissue at the output resolution: fat, paraspinal muscles, psoas, aorta (per vertebra segment)
    vol = np.full(shape, HU["fat"], dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    body_occ = np.zeros(shape, dtype=np.float32)
    body_hu = np.zeros(shape, dtype=np.float32)
    post_occ = np.zeros(shape, dtype=np.float32)
    for it in items:
        v: VertebraTruth = it["truth"]
        sl, u, vv, w = _local(it, grid, margin=it["disc_above"] + 1.0)
        a, b, h = it["size"] / 2
        segment = np.abs(w) <= h + it["disc_above"] / 2 + 0.6
        canal_v = -b - 8.0
        muscle = np.minimum(np.sqrt(((np.abs(u) - 22.0) / 15.0) ** 2 + ((vv - canal_v + 14.0) / 13.0) ** 2) - 1.0,
                            np.sqrt(((np.abs(u) - (a + 12.0)) / 11.0) ** 2 + (vv / 12.0) ** 2) - 1.0
                            if v.level.startswith("L") else np.inf)
        aorta = np.sqrt((u + 12.0) ** 2 + (vv - b - 12.0) ** 2) - 10.0
        canal = np.sqrt(u * u + (vv - canal_v) ** 2) - 8.0
        disc_r = np.sqrt((u / a) ** 2 + (vv / b) ** 2)
        disc = (np.abs(w) > h - 1.5) & (disc_r < 1.0) & segment
        region = vol[sl]
        region[:] = np.where(segment, HU["fat"] + _soft(muscle * 8.0, voxel) * (HU["muscle"] - HU["fat"]), region)
        region[:] = np.where(segment, region + _soft(aorta, voxel) * (HU["blood"] - region), region)
        region[:] = np.where(segment, region + _soft(canal, voxel) * (HU["csf"] - region), region)
        region[:] = np.where(disc, HU["disc"], region)
        p_occ = _soft(_posterior_sdf(it, u, vv, w), voxel) * (np.abs(w) <= h + 1.0)
        post = post_occ[sl]
        new = p_occ > post
        post[:] = np.maximum(post, p_occ)
        lab = labels[sl]
        lab[new & (p_occ >= 0.5)] = VERSE_LABELS[v.level]
    vol += post_occ * (HU["posterior"] - vol)
    truths = []
    for it in items:
        v = it["truth"]
        marrow = v.fat_fraction * HU["fat_marrow"] + (1 - v.fat_fraction) * HU["red_marrow"]
        out = _body(it, grid, grid[3], rng, marrow)
        if out is None:
            continue
        sl, occ, hu_sum = out
        region_occ = body_occ[sl]
        take = occ > region_occ
        body_hu[sl] = np.where(take, hu_sum, body_hu[sl])
        region_occ[:] = np.maximum(region_occ, occ)
        lab = labels[sl]
        lab[take & (occ >= 0.5)] = VERSE_LABELS[v.level]
        truths.append({"level": v.level, "centre_mm": (it["centre"]).round(3).tolist(),
                       "axes": it["frame"].round(5).tolist(), "size_mm": it["size"].round(3).tolist()})
    vol = (1 - body_occ) * vol + body_hu
    # scanner: calibration, PSF (in-plane kernel + slice profile beyond the box average), correlated noise
    vol = patient.hu_gain * vol + patient.hu_offset
    vol = ndimage.gaussian_filter(vol, (patient.psf_mm / sp[0], patient.psf_mm / sp[1], 0.35), mode="nearest")
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (0.7, 0.7, 0.4))
    vol += noise * (patient.noise_hu / max(float(noise.std()), 1e-6))
    affine = np.diag([*sp, 1.0])
    affine[:3, 3] = origin
    image = np.clip(np.round(vol), -1024, 3071).astype(np.int16)
    return RenderedCT(image=image, labels=labels, affine=affine, vertebrae=truths)
