"""Fluorescence-microscopy phantom cohort (Dermatomyositis / TissueNet analogue) for S4MI and MedSASS.

Whole slides ("samples", the subject unit) grouped into a few patients are rendered as three stains —
DAPI (nuclei, blue) and two marker channels (red, green) — then tiled into square tiles, the edge tiles
blank-padded (all zeros) as the paper does, and written as RGB composite PNGs with a nuclei mask and a
whole-cell mask. A tile's multi-hot label lists the cell types with a nucleus centre in the tile; the types
are marker *combinations* (co-localisation in one cell), so the label is not readable from channel means:

=========  ===================  =====================  ===================
type       red membrane (CD4)   green membrane (CXCR5)  green nuclear (RORgt)
=========  ===================  =====================  ===================
TFH-1      +                    +                       -
TFH-217    +                    -                       +
TFH-like   +                    -                       -
B cell     -                    +                       -
other      -                    -                       -
=========  ===================  =====================  ===================

Imaging: dark background with tissue autofluorescence and lipofuscin-like granules, uneven illumination,
nuclei of radius 3-8 px (at the saved tile size) in touching clusters with some dim ones, defocus blur,
bleed-through between channels, Poisson (shot) and read noise above a camera dark level. Every slide is rendered
from its own random stream ``(seed, stream, index)``, so the output is byte-identical for a seed whatever the number
of workers.

- [0] Singh et al., 2024, Shifting to machine supervision: annotation-efficient semi and self-supervised
  learning for automatic medical image segmentation and classification, Sci. Rep. (§Data: 198 samples from
  7 patients, 1408 x 1876 tiled to 480 x 480 with blank padding, 12 tiles per sample, resized to 224).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.segmentation import expand_labels

from monai_osteo.data.phantoms.jobs import run_jobs, write_cohort
from monai_osteo.data.splits import subject_split
from monai_osteo.io import atomic_write

__all__ = ["CELL_TYPES", "FLUORESCENCE_PRESETS", "FluorescenceSlide", "ensure_fluorescence_cohort",
           "generate_fluorescence_cohort", "render_slide"]

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
CELL_TYPES = ("TFH-1", "TFH-217", "TFH-like", "B cell", "other")
#: per type: red membrane, green membrane, green nuclear
_MARKERS = np.array([[1, 1, 0], [1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
#: training / validation / test shares of the patients (the paper's 70/10/20)
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
#: named sizes; "paper" is the Dermatomyositis regime: 198 samples of 1408 x 1876 (= 4 x 352 x 469) from 7 patients,
#: 480-pixel tiles (12 per sample) saved at 224
FLUORESCENCE_PRESETS = {
    "tiny": {"slides": 7, "patients": 7, "unlabeled": 1, "unlabeled_patients": 1, "slide_shape": (250, 370),
             "tile": 128, "size": 128},
    "quick": {"slides": 24, "patients": 7, "unlabeled": 8, "unlabeled_patients": 2, "slide_shape": (657, 876),
              "tile": 224, "size": 224},
    "paper": {"slides": 198, "patients": 7, "unlabeled": 0, "unlabeled_patients": 0, "slide_shape": (1408, 1876),
              "tile": 480, "size": 224},
}
_PARAM_KEYS = ("slides", "patients", "unlabeled", "unlabeled_patients", "slide_shape", "tile", "size", "seed",
               "density", "split_fractions")


@dataclass
class FluorescenceSlide:
    """One rendered slide (before tiling).

    Attributes:
        image: (H, W, 3) uint8 RGB composite (red, green markers; DAPI blue).
        channels: (3, H, W) float32 detected intensities in [0, 1] (red, green, DAPI), blurred and noisy.
        nuclei: (H, W) int32 nucleus instance labels (0 background, i + 1 for cell i).
        cells: (H, W) int32 whole-cell instance labels (nucleus + cytoplasm + membrane), same ids.
        cell_types: (N,) int64 index into ``CELL_TYPES`` of each cell.
        centroids: (N, 2) float64 nucleus centres (row, column).
    """

    image: np.ndarray
    channels: np.ndarray
    nuclei: np.ndarray
    cells: np.ndarray
    cell_types: np.ndarray
    centroids: np.ndarray


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std low-frequency noise (gaussian-filtered white noise on a coarse grid, upsampled)."""
    step = max(1, int(sigma // 4))
    coarse = rng.standard_normal((shape[0] // step + 2, shape[1] // step + 2))
    coarse = ndimage.gaussian_filter(coarse, sigma / step, mode="wrap")
    field = ndimage.zoom(coarse, step, order=1)[: shape[0], : shape[1]]
    return (field - field.mean()) / (field.std() + 1e-12)


def _place_nuclei(rng, tissue, n, radius, scale):
    """Nucleus centres: 60% in touching clusters of 3-15, the rest scattered, all inside the tissue."""
    idx = np.flatnonzero(tissue)
    if idx.size == 0 or n == 0:
        return np.zeros((0, 2))
    shape = tissue.shape
    centres = []
    n_clustered = int(0.6 * n)
    while len(centres) < n_clustered:
        k = int(rng.integers(3, 16))
        c = np.array(np.unravel_index(rng.choice(idx), shape), dtype=float)
        spread = 1.2 * np.mean(radius) * scale * np.sqrt(k)
        centres.extend(c + rng.normal(0, spread, (k, 2)))
    centres = np.array(centres[:n_clustered]).reshape(-1, 2)
    scattered = np.array(np.unravel_index(rng.choice(idx, n - n_clustered), shape), dtype=float).T
    pts = np.concatenate([centres, scattered]) if n_clustered else scattered
    pts = np.clip(pts, 0, np.array(shape) - 1)
    keep = tissue[pts[:, 0].astype(int), pts[:, 1].astype(int)]
    return pts[keep]


def render_slide(rng: np.random.Generator, shape: Sequence[int] = (657, 876), scale: float = 1.0,
                 density: float = 150.0, radius: Sequence[float] = (3.0, 8.0), type_foci: Sequence[float] = (
                     0.6, 0.6, 0.7, 0.7), cell_margin: float = 3.0) -> FluorescenceSlide:
    """Render one fluorescence slide.

    Args:
        rng: the slide's random stream.
        shape: slide (H, W) in pixels.
        scale: pixels per saved-tile pixel (tile / size): nucleus sizes and blurs are given at the saved size.
        density: mean nuclei per 224 x 224 saved-size area of tissue (per slide drawn log-uniformly in
            [density / 3, density * 1.5], i.e. 50-225 around the default).
        radius: range of the nucleus semi-axes (saved-size pixels).
        type_foci: expected foci per 224-area of each marker-positive type (``CELL_TYPES[:4]``); the cells of a
            focus are of that type with probability 0.65.
        cell_margin: cytoplasm + membrane width around the nucleus (saved-size pixels).
    """
    h, w = (int(s) for s in shape)
    area224 = h * w / (224.0 * scale) ** 2
    # tissue coverage (some regions empty) and per-slide density
    tissue_field = _smooth_field(rng, (h, w), 40 * scale)
    coverage = rng.uniform(0.4, 1.0)
    tissue = tissue_field > np.quantile(tissue_field, 1 - coverage)
    dens = np.exp(rng.uniform(np.log(density / 3), np.log(density * 1.5)))
    n = int(rng.poisson(dens * area224 * coverage))
    pts = _place_nuclei(rng, tissue, n, radius, scale)
    n = len(pts)
    # paint nuclei as irregular ellipses; later nuclei fill only free pixels (touching, not overlapping)
    nuclei = np.zeros((h, w), np.int32)
    a = (radius[0] + (radius[1] - radius[0]) * rng.beta(1.5, 2.5, n)) * scale  # skewed towards small nuclei
    b = a * rng.uniform(0.65, 1.0, n)
    theta, phase, wobble = rng.uniform(0, np.pi, n), rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 0.12, n)
    for i in range(n):
        r = int(np.ceil(a[i] * (1 + wobble[i]))) + 1
        y0, x0 = int(round(pts[i, 0])), int(round(pts[i, 1]))
        ys, xs = slice(max(0, y0 - r), min(h, y0 + r + 1)), slice(max(0, x0 - r), min(w, x0 + r + 1))
        yy, xx = np.mgrid[ys, xs]
        dy, dx = yy - pts[i, 0], xx - pts[i, 1]
        u = dx * np.cos(theta[i]) + dy * np.sin(theta[i])
        v = -dx * np.sin(theta[i]) + dy * np.cos(theta[i])
        rho = np.sqrt((u / a[i]) ** 2 + (v / b[i]) ** 2)
        inside = rho <= 1 + wobble[i] * np.cos(3 * np.arctan2(v, u) + phase[i])
        region = nuclei[ys, xs]
        region[inside & (region == 0)] = i + 1
    # drop nuclei hidden by their neighbours, renumber 1..n
    present = np.unique(nuclei)[1:]
    lut = np.zeros(n + 1, np.int32)
    lut[present] = np.arange(1, present.size + 1)
    nuclei = lut[nuclei]
    pts = pts[present - 1]
    n = present.size
    cells = expand_labels(nuclei, distance=cell_margin * scale).astype(np.int32)
    # cell types from spatial foci of each positive type
    types = np.full(n, 4, np.int64)
    for t in rng.permutation(4):
        for _ in range(int(rng.poisson(type_foci[t] * area224))):
            c = rng.uniform((0, 0), (h, w))
            rad = rng.uniform(0.1, 0.3) * 224 * scale
            near = (np.hypot(*(pts - c).T) < rad) & (types == 4) & (rng.random(n) < 0.65)
            types[near] = t
    # stains
    lut_f = np.zeros(n + 1, np.float32)
    dapi_level = np.where(rng.random(n) < 0.2, rng.uniform(0.12, 0.3, n), rng.uniform(0.45, 0.9, n))
    lut_f[1:] = dapi_level
    chromatin = 1 + 0.2 * _smooth_field(rng, (h, w), 0.8 * scale)
    dapi = lut_f[nuclei] * chromatin
    interior = (ndimage.grey_erosion(cells, size=3) == cells) & (ndimage.grey_dilation(cells, size=3) == cells)
    membrane = (cells > 0) & ~ndimage.binary_erosion(interior, iterations=max(0, int(round(scale)) - 1))
    expr = rng.uniform(0.5, 1.0, (n, 3)).astype(np.float32) * _MARKERS[types]  # per-cell expression of 3 markers
    expr = np.concatenate([np.zeros((1, 3), np.float32), expr])
    gains = rng.uniform(0.5, 1.3, 3)
    red = gains[0] * expr[cells, 0] * membrane
    green = gains[1] * expr[cells, 1] * membrane + gains[2] * expr[nuclei, 2] * 0.8
    # background: autofluorescence of the tissue (mostly green/red), lipofuscin-like granules in all channels
    tissue_soft = ndimage.gaussian_filter(tissue.astype(np.float32), 6 * scale)
    auto = (1 + 0.4 * _smooth_field(rng, (h, w), 10 * scale)).clip(0.2) * tissue_soft
    af = rng.uniform(0.02, 0.07)
    granules = np.zeros((h, w), np.float32)
    k = int(rng.poisson(3 * area224))
    granules[rng.integers(0, h, k), rng.integers(0, w, k)] = rng.uniform(0.3, 1.0, k)
    granules = ndimage.grey_dilation(granules, size=max(2, int(round(2 * scale))))
    stains = np.stack([red + af * 1.2 * auto + 0.45 * granules, green + af * 1.6 * auto + 0.45 * granules,
                       dapi + af * 0.5 * auto + 0.12 * granules]).astype(np.float32)
    # bleed-through (rows: detected red, green, blue; columns: red, green, DAPI stain)
    bleed = np.array([[1.0, 0.06, 0.0], [0.03, 1.0, 0.08], [0.0, 0.02, 1.0]], np.float32)
    stains = np.einsum("ij,jhw->ihw", bleed, stains)
    illumination = (1 + 0.15 * _smooth_field(rng, (h, w), 60 * scale)) * (0.8 + 0.2 * rng.random())
    sigma = rng.uniform(0.5, 1.4) * scale
    stains = np.stack([ndimage.gaussian_filter(c, sigma) for c in stains]) * illumination
    peak = rng.uniform(80, 300)  # photons at intensity 1
    offset = rng.uniform(0.008, 0.02)  # camera dark level: the background is dark, never exactly blank
    noisy = rng.poisson(np.clip(stains, 0, None) * peak) / peak + rng.normal(offset, 0.006, stains.shape)
    channels = np.clip(noisy, 0, 1).astype(np.float32)
    image = np.round(channels.transpose(1, 2, 0) * 255).astype(np.uint8)
    return FluorescenceSlide(image, channels, nuclei, cells, types, pts)


def _save_png(array: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def _job(args) -> tuple[list[dict] | None, str | None]:
    out, sid, patient, seed, stream, index, kw = args
    try:
        rng = np.random.default_rng([seed, stream, index])
        tile, size = kw["tile"], kw["size"]
        s = render_slide(rng, kw["slide_shape"], scale=tile / size, density=kw["density"])
        h, w = s.nuclei.shape
        ny, nx = -(-h // tile), -(-w // tile)
        pad = ((0, ny * tile - h), (0, nx * tile - w))
        img = np.pad(s.image, pad + ((0, 0),))  # blank (zero) padding at the bottom and right edges
        nuc = np.pad((s.nuclei > 0).astype(np.uint8), pad)
        cel = np.pad((s.cells > 0).astype(np.uint8), pad)
        cy, cx = (s.centroids[:, 0] // tile).astype(int), (s.centroids[:, 1] // tile).astype(int)
        records = []
        for r in range(ny):
            for c in range(nx):
                name = f"{sid}_r{r}c{c}"
                win = (slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
                ti, tn, tc = img[win], nuc[win], cel[win]
                if size != tile:
                    ti = np.asarray(Image.fromarray(ti).resize((size, size), Image.BILINEAR))
                    tn = np.asarray(Image.fromarray(tn).resize((size, size), Image.NEAREST))
                    tc = np.asarray(Image.fromarray(tc).resize((size, size), Image.NEAREST))
                paths = [Path("images") / f"{name}.png", Path("masks") / f"{name}_nuclei.png",
                         Path("masks") / f"{name}_cells.png"]
                for arr, p in zip((ti, tn, tc), paths):
                    _save_png(np.ascontiguousarray(arr), out / p)
                counts = np.bincount(s.cell_types[(cy == r) & (cx == c)], minlength=len(CELL_TYPES))
                records.append({
                    "image": str(paths[0]), "mask": str(paths[1]), "mask_cells": str(paths[2]),
                    "subject_id": sid, "patient": patient, "tile": [r, c],
                    "label": [int(k > 0) for k in counts], "cell_counts": [int(k) for k in counts],
                    "valid_shape": [min(tile, h - r * tile) * size // tile, min(tile, w - c * tile) * size // tile],
                })
        return records, None
    except Exception as e:  # a batch job reports the failing item and finishes the rest
        return None, f"{sid}: {type(e).__name__}: {e}"


def _patients(rng, slides: int, patients: int, prefix: str) -> list[str]:
    """One patient id per slide: every patient has >= 1 slide, the rest spread unevenly."""
    if patients < 1 or slides < patients:
        raise ValueError(f"need 1 <= patients <= slides, got {patients!r} patients for {slides!r} slides.")
    owner = np.concatenate([np.arange(patients), rng.choice(patients, slides - patients, p=rng.dirichlet(
        np.full(patients, 4.0)))])
    return [f"{prefix}{p + 1:02d}" for p in rng.permutation(owner)]


def generate_fluorescence_cohort(out_dir: str | os.PathLike, preset: str = "quick", seed: int = 0,
                                 workers: int | None = None, progress: bool = True, **overrides) -> Path:
    """Write the fluorescence phantom cohort to ``out_dir`` and return the path of its ``datalist.json``.

    Args:
        out_dir: output folder (created); holds ``images/``, ``masks/``, ``datalist.json``, ``cohort.json``.
        preset: one of ``FLUORESCENCE_PRESETS`` (tiny, quick, paper), the sizes to start from.
        seed: master seed; the same seed gives byte-identical files whatever ``workers``.
        workers: processes (default: all cores).
        progress: show a progress bar.
        overrides: any preset key — ``slides``, ``patients`` (labelled slides and the patients they come
            from, split by patient), ``unlabeled``, ``unlabeled_patients`` (extra slides from their own
            patients, split ``"unlabeled"``), ``slide_shape`` (H, W), ``tile`` (tile side on the slide),
            ``size`` (saved tile side; tiles are resized when it differs from ``tile``), ``density`` (nuclei
            per 224-area, default 150), ``split_fractions`` (patients' training/validation/test shares).
    """
    if preset not in FLUORESCENCE_PRESETS:
        raise ValueError(f"preset must be one of {sorted(FLUORESCENCE_PRESETS)}, got {preset!r}.")
    unknown = set(overrides) - set(_PARAM_KEYS)
    if unknown:
        raise ValueError(f"unknown overrides {sorted(unknown)}; valid keys are {sorted(_PARAM_KEYS)}.")
    kw = {"density": 150.0, "split_fractions": SPLIT_FRACTIONS, **FLUORESCENCE_PRESETS[preset], **overrides}
    kw["slide_shape"] = [int(s) for s in kw["slide_shape"]]
    kw["split_fractions"] = [float(f) for f in kw["split_fractions"]]
    if min(kw["slide_shape"]) < 16 or not 16 <= kw["size"] <= kw["tile"] * 4 or kw["tile"] < 16:
        raise ValueError(f"slide_shape, tile and size must be >= 16 pixels (size <= 4 x tile), got "
                         f"{kw['slide_shape']!r}, {kw['tile']!r}, {kw['size']!r}.")
    if kw["unlabeled"] < 0 or (kw["unlabeled"] and not 1 <= kw["unlabeled_patients"] <= kw["unlabeled"]):
        raise ValueError(f"unlabeled must be >= 0 with 1 <= unlabeled_patients <= unlabeled, got "
                         f"{kw['unlabeled']!r}, {kw['unlabeled_patients']!r}.")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    lab_pat = _patients(np.random.default_rng([seed, 0]), kw["slides"], kw["patients"], "FP")
    unl_pat = _patients(np.random.default_rng([seed, 1]), kw["unlabeled"], kw["unlabeled_patients"],
                        "FU") if kw["unlabeled"] else []
    render_kw = {k: kw[k] for k in ("slide_shape", "tile", "size", "density")}
    jobs = [(out, f"FS{i + 1:04d}", p, seed, 20, i, render_kw) for i, p in enumerate(lab_pat)]
    jobs += [(out, f"FU{i + 1:04d}", p, seed, 21, i, render_kw) for i, p in enumerate(unl_pat)]
    done, failures = run_jobs(_job, jobs, workers, progress, "phantom fluorescence cohort", "slide")
    records = [rec for recs in done for rec in recs]
    split = subject_split(lab_pat, None, kw["split_fractions"], seed=seed)
    for r in records:
        r["split"] = split[r["patient"]] if r["patient"].startswith("FP") else "unlabeled"
    params = {"generator": "monai_osteo.data.phantoms.fluorescence", "version": GENERATOR_VERSION, "preset": preset,
              "seed": seed,
              **{k: kw[k] for k in _PARAM_KEYS if k != "seed"}}
    datalist = {
        "name": "monai_osteo phantom fluorescence tiles",
        "description": "Synthetic fluorescence microscopy tiles (red, green markers; DAPI blue) with nuclei and "
                       "whole-cell masks and a multi-hot label of the cell types in the tile; subject_id is the "
                       "slide, split by patient. Paths are relative to this file.",
        "labels": {"0": "background", "1": "nucleus"},
        "labels_cells": {"0": "background", "1": "cell"},
        "classes": {str(i): t for i, t in enumerate(CELL_TYPES)},
        "markers": {"red": "membrane (CD4-like)", "green": "membrane (CXCR5-like) or nuclear (RORgt-like)",
                    "blue": "DAPI"},
        "generator": params,
        **{name: [r for r in records if r["split"] == name] for name in ("training", "validation", "test",
                                                                          "unlabeled")},
    }
    path = write_cohort(out, datalist, params, failures, len(jobs), "slides")
    logger.info("wrote %d tiles of %d slides to %s", len(records), len(jobs), out)
    return path


def ensure_fluorescence_cohort(out_dir: str | os.PathLike, preset: str = "quick", seed: int = 0,
                               **overrides) -> Path:
    """Return the datalist of a cached cohort in ``out_dir``, generating it first if absent or different."""
    if preset not in FLUORESCENCE_PRESETS:
        raise ValueError(f"preset must be one of {sorted(FLUORESCENCE_PRESETS)}, got {preset!r}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers, progress = overrides.pop("workers", None), overrides.pop("progress", True)
    want = {"density": 150.0, "split_fractions": SPLIT_FRACTIONS, **FLUORESCENCE_PRESETS[preset], **overrides,
            "seed": seed}
    want["slide_shape"] = [int(s) for s in want["slide_shape"]]
    want["split_fractions"] = [float(f) for f in want["split_fractions"]]
    with open(out / ".cohort.lock", "w") as lock:  # one generator per folder; the others then find it up to date
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            meta = out / "cohort.json"
            if meta.is_file() and (out / "datalist.json").is_file():
                have = json.loads(meta.read_text())
                if not have.get("failures") and have.get("version") == GENERATOR_VERSION and all(
                        have.get(k) == want.get(k) for k in _PARAM_KEYS):
                    return out / "datalist.json"
            return generate_fluorescence_cohort(out, preset, seed, workers=workers, progress=progress, **overrides)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
