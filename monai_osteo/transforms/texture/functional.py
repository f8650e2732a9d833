"""Sliding-window GLCM feature maps in torch, identical to pyradiomics' voxel-based extraction, without matrices.

pyradiomics [1] computes a voxel-based GLCM feature at a voxel ``v`` of the ROI (the mask) as follows, and so
does this module:

1. *Discretisation* (``imageoperations.binImage``) over a reference region: the ROI voxels when the kernel is
   masked, else every voxel of the image cropped to the ROI's bounding box padded by the kernel radius (the crop
   the extractor makes); bin edges as ``getBinEdges``: fixed bin width ``W`` -> ``arange(min - min % W,
   max + 2 W, W)``, fixed bin count ``N`` -> ``numpy.histogram(values, N)`` edges with the last one + 1; level
   = ``numpy.digitize(x, edges)`` (so ``floor(x / W) - floor(min / W) + 1`` for a bin width).
2. *Kernel*: the box ``[v - r, v + r]`` per axis clipped at the image border; a pair ``(p, p + a)`` for one of
   the 13 (3-D) or 4 (2-D) directions ``a`` (distance 1; axes of size 1 get none) counts when both voxels lie in
   the box and, with a masked kernel, both in the ROI. The GLCM of each direction is symmetrised and normalised.
3. *Features* per direction, then ``numpy.nanmean`` over the directions (a direction without pairs in the box
   is NaN), except JointAverage, whose plain mean is NaN as soon as one direction is empty in the box (and not
   empty everywhere: pyradiomics drops the directions that are empty for every ROI voxel, with its default
   ``voxelBatch=-1``).

Every feature here is linear in the normalised GLCM, ``sum_ij f(i, j) p(i, j)``, so per direction it equals the
window sum of the pair quantity ``(f(g_p, g_q) + f(g_q, g_p)) / 2`` over the counted pairs divided by the
window's pair count: no co-occurrence matrix is built. With the pair indexed by its lower corner ``m`` (per
axis the smaller coordinate of its two voxels), "both voxels in the box" reads ``m`` in ``[v - r, v + r - 1]``
on the axes the direction moves along and ``[v - r, v + r]`` on the others, so the window sums are separable box
sums, done here by exact shifted additions (log2 of the window length per axis). Features that are not linear
in p (entropies, energy, correlation, MCC, maximum probability, ...) need the matrices and are not provided.

Precision: gray levels and the pair quantities of Autocorrelation, JointAverage, SumAverage, Contrast and
DifferenceAverage are integers, so their window sums are exact in float64 (results equal pyradiomics to
~1e-15 relative) and in float32 while below 2**24; float32 rounds the rest and the divisions, a few ulps in all:
at most 3.4e-7 relative to float64 measured on CT-like int16 volumes and 16-bit radiographs (bin width 25,
up to 2,600 levels), radius 1 to 3, all features.

- [0] TP-SwAV texture pool: ``papers/vertebral_ct_tpswav_moe.txt`` §2.1 and Fig. 1C.
- [1] van Griethuysen et al., 2017, Computational radiomics system to decode the radiographic phenotype
  (pyradiomics), ``radiomics/{imageoperations,base,glcm}.py`` and ``src/cmatrices.c``.
- [2] Haralick, Shanmugam and Dinstein, 1973, Textural features for image classification.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_TILE_BYTES",
    "GLCM_FEATURES",
    "TP_SWAV_FEATURES",
    "bin_edges",
    "discretise",
    "glcm_directions",
    "glcm_feature_maps",
    "glcm_texture_maps",
    "window_sum",
]

#: the four texture maps of the TP-SwAV texture pool [0]
TP_SWAV_FEATURES = ("Autocorrelation", "JointAverage", "Contrast", "DifferenceAverage")
#: the GLCM features provided (pyradiomics names), all linear in the normalised GLCM p(i, j) [1]
GLCM_FEATURES = (
    "Autocorrelation",  # sum i j p
    "JointAverage",  # sum i p (symmetric GLCM)
    "SumAverage",  # sum (i + j) p
    "Contrast",  # sum (i - j)^2 p
    "DifferenceAverage",  # sum |i - j| p
    "Id",  # sum p / (1 + |i - j|)
    "Idm",  # sum p / (1 + (i - j)^2)
    "Idmn",  # sum p / (1 + (i - j)^2 / Ng^2)
    "Idn",  # sum p / (1 + |i - j| / Ng)
    "InverseVariance",  # sum_{i != j} p / (i - j)^2
)
#: default size of one working tensor (all features of a tile with its halo) of :func:`glcm_texture_maps`: small
#: enough for glibc to recycle freed blocks (its dynamic mmap threshold stops at 32 MiB) instead of faulting in
#: fresh pages for every operation, which would make large volumes several times slower
DEFAULT_TILE_BYTES = 2**24


def glcm_directions(spatial_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """The distance-1 GLCM directions of pyradiomics, in its order: one of each pair ``+a, -a``.

    Args:
        spatial_shape: (H, W) or (H, W, D); axes of size 1 get no direction (as in pyradiomics).

    Returns:
        offsets whose first non-zero component is +1: 4 in 2-D, 13 in 3-D (fewer with size-1 axes).
    """
    nd = len(spatial_shape)
    out = []
    for idx in range(3**nd):
        off = tuple(1 - (idx // 3 ** (nd - 1 - d)) % 3 for d in range(nd))
        moving = [d for d in range(nd) if off[d]]
        if moving and off[moving[0]] > 0 and all(spatial_shape[d] > 1 for d in moving):
            out.append(off)
    return out


def bin_edges(minimum, maximum, bin_width: float = 25, bin_count: int | None = None) -> np.ndarray:
    """Bin edges of pyradiomics' ``getBinEdges`` for a reference region with this minimum and maximum.

    Args:
        minimum, maximum: numpy scalars of the reference region, in the dtype pyradiomics would see (the arithmetic
            is done in that dtype, as pyradiomics does, e.g. float32 for a float32 image).
        bin_width: fixed bin width (used when ``bin_count`` is None).
        bin_count: fixed number of bins.

    Returns:
        float64 edges (exact copies of pyradiomics' ones) for ``numpy.digitize`` / :func:`discretise`.
    """
    if bin_count is not None:
        edges = np.histogram_bin_edges(np.array([minimum, maximum]), int(bin_count))
        edges[-1] += 1  # the maximum falls in the top bin (digitize's bins are half open)
    else:
        low = minimum - (minimum % bin_width)
        edges = np.arange(low, maximum + 2 * bin_width, bin_width)
        if len(edges) == 1:  # flat region
            edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return np.asarray(edges, dtype=np.float64)


def discretise(x: torch.Tensor, edges: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Gray levels ``numpy.digitize(x, edges)`` (1 = first bin), compared in float64 (exact for int and float32).

    Args:
        x: image of any shape and real dtype.
        edges: increasing bin edges from :func:`bin_edges`.

    Returns:
        int64 levels of ``x``'s shape: ``i`` where ``edges[i - 1] <= x < edges[i]``.
    """
    edges_t = torch.as_tensor(edges, dtype=torch.float64, device=x.device)
    return torch.bucketize(x.to(torch.float64), edges_t, right=True)


def _sliding_sum(x: torch.Tensor, dim: int, width: int) -> torch.Tensor:
    """``y[v] = sum_{k < width} x[v + k]`` along ``dim`` by doubling (about log2(width) additions, no round-off
    beyond the additions themselves); length ``x.shape[dim] - width + 1``."""
    n_out = x.shape[dim] - width + 1
    result, block, block_width, offset = None, x, 1, 0
    while width:
        if width & 1:
            term = block.narrow(dim, offset, n_out)
            result = term if result is None else result + term
            offset += block_width
        width >>= 1
        if width:
            length = block.shape[dim] - block_width
            block = block.narrow(dim, 0, length) + block.narrow(dim, block_width, length)
            block_width *= 2
    return result


def window_sum(x: torch.Tensor, dim: int, lo: int, hi: int, size: int) -> torch.Tensor:
    """Box sum along one axis with zeros outside: ``y[v] = sum_{k=lo}^{hi} x[v + k]`` for ``v`` in ``[0, size)``.

    Args:
        x: tensor whose axis ``dim`` has length ``<= size + hi`` (entries past it are zeros).
        dim: the axis (non-negative).
        lo, hi: window offsets, ``lo <= 0 <= hi + 1``.
        size: output length along ``dim``.
    """
    pad = [0, 0] * (x.ndim - 1 - dim) + [-lo, size + hi - x.shape[dim]]
    return _sliding_sum(F.pad(x, pad), dim, hi - lo + 1)


def _pair_quantities(features: Sequence[str], a: torch.Tensor, b: torch.Tensor, n_gray: int, out: torch.Tensor) -> None:
    """Write into ``out[k]`` the symmetrised pair quantity ``(f(a, b) + f(b, a)) / 2`` of the k-th feature."""
    d = None
    for name, dst in zip(features, out):
        if name == "Autocorrelation":
            torch.mul(a, b, out=dst)
        elif name in ("JointAverage", "SumAverage"):
            torch.add(a, b, out=dst)
            if name == "JointAverage":
                dst.mul_(0.5)
        else:
            d = a - b if d is None else d
            if name == "Contrast":
                torch.mul(d, d, out=dst)
            elif name == "DifferenceAverage":
                torch.abs(d, out=dst)
            elif name == "Id":
                dst.copy_(1.0 / (1.0 + d.abs()))
            elif name == "Idm":
                dst.copy_(1.0 / (1.0 + d * d))
            elif name == "Idmn":
                dst.copy_(1.0 / (1.0 + d * d / float(n_gray**2)))
            elif name == "Idn":
                dst.copy_(1.0 / (1.0 + d.abs() / float(n_gray)))
            elif name == "InverseVariance":
                d2 = d * d
                dst.copy_(torch.where(d2 > 0, 1.0 / d2.clamp_min(1.0), torch.zeros_like(d2)))
            else:
                raise ValueError(f"features must be among {GLCM_FEATURES}, got {name!r}.")


def glcm_feature_maps(
    levels: torch.Tensor,
    kernel_radius: int,
    features: Sequence[str] = TP_SWAV_FEATURES,
    valid: torch.Tensor | None = None,
    n_gray: int = 1,
    kept: Sequence[bool] | None = None,
) -> torch.Tensor:
    """GLCM feature maps at every voxel of a discretised image (no ROI restriction, no fill).

    Args:
        levels: (H, W) or (H, W, D) gray levels as a float tensor; its dtype is the working dtype.
        kernel_radius: r >= 1, the kernel is the box ``[v - r, v + r]`` clipped at the border.
        features: names among :data:`GLCM_FEATURES`.
        valid: bool tensor like ``levels``: voxels that may be in a pair (the ROI for a masked kernel); None = all.
        n_gray: ``Ng``, the largest gray level of the reference region (Idmn and Idn only).
        kept: per direction of :func:`glcm_directions`, whether pyradiomics keeps it (it has a pair somewhere);
            a kept direction without pairs in the box makes JointAverage NaN. None = all kept.

    Returns:
        (F, H, W[, D]) maps in ``levels.dtype``, NaN where the box holds no pair in any direction.
    """
    shape = tuple(levels.shape)
    nd, r = len(shape), int(kernel_radius)
    directions = glcm_directions(shape)
    kept = [True] * len(directions) if kept is None else list(kept)
    acc = levels.new_zeros((len(features), *shape))
    n_valid = levels.new_zeros(shape) if valid is not None else None
    joint_nan = None
    if valid is not None and "JointAverage" in features:
        joint_nan = torch.zeros(shape, dtype=torch.bool, device=levels.device)
    for a, keep in zip(directions, kept):
        # the pair (x, x + a) indexed by its lower corner m: x = m (+1 on the axes where a = -1)
        lower = tuple(slice(None) if o == 0 else slice(0, n - 1) if o > 0 else slice(1, n) for o, n in zip(a, shape))
        upper = tuple(slice(None) if o == 0 else slice(1, n) if o > 0 else slice(0, n - 1) for o, n in zip(a, shape))
        first, second = levels[lower], levels[upper]
        # pair quantities written once into a buffer padded by r zeros on every side: the window sums along the
        # axes then need no further padding (width 2r on the moving axes, 2r + 1 on the others)
        n_ch = len(features) + (valid is not None)
        buffer = levels.new_zeros((n_ch, *(n - (o != 0) + 2 * r for o, n in zip(a, shape))))
        interior = buffer[(slice(None),) + tuple(slice(r, r + n - (o != 0)) for o, n in zip(a, shape))]
        _pair_quantities(features, first, second, n_gray, interior[-len(features):])
        if valid is not None:
            pair = interior[0]
            torch.logical_and(valid[lower], valid[upper], out=pair)
            interior[1:].mul_(pair)
        sums = buffer
        for d, o in enumerate(a):
            sums = _sliding_sum(sums, d + 1, 2 * r + (o == 0))
        if valid is None:  # every voxel valid: the pair count (> 0) is a product of clipped window lengths
            count = levels.new_ones(())
            for d, o in enumerate(a):
                line = window_sum(levels.new_ones((1, shape[d] - (o != 0))), 1, -r, r - (o != 0), shape[d])
                count = count * line.reshape([-1 if k == d else 1 for k in range(nd)])
            acc += sums.div_(count)
            continue
        count, sums = sums[0], sums[1:]
        has_pairs = count > 0
        acc += sums.div_(count.clamp_min(1))
        n_valid += has_pairs
        if joint_nan is not None and keep:
            joint_nan |= ~has_pairs
    if valid is None:
        return acc / len(directions)
    out = acc / n_valid  # 0 / 0 = NaN where no direction has a pair
    if joint_nan is not None:
        out[list(features).index("JointAverage")].masked_fill_(joint_nan, float("nan"))
    return out


def _reference_dtype(dtype: torch.dtype) -> np.dtype:
    """numpy dtype in which pyradiomics would bin this image: float32/float64 as is, others as float64 (for
    integers this equals pyradiomics' integer arithmetic barring its overflows)."""
    return np.dtype(np.float32) if dtype in (torch.float32, torch.float16, torch.bfloat16) else np.dtype(np.float64)


def _bounding_box(roi: torch.Tensor, pad: int) -> tuple[slice, ...]:
    """Bounding box of ``roi`` (bool, non-empty) padded by ``pad`` and clipped to the image, as slices."""
    out = []
    for d in range(roi.ndim):
        hit = torch.nonzero(roi.any(dim=[k for k in range(roi.ndim) if k != d])).flatten()
        out.append(slice(max(int(hit[0]) - pad, 0), min(int(hit[-1]) + pad + 1, roi.shape[d])))
    return tuple(out)


def glcm_texture_maps(
    image: torch.Tensor,
    mask: torch.Tensor | None = None,
    features: Sequence[str] = TP_SWAV_FEATURES,
    kernel_radius: int = 1,
    bin_width: float = 25,
    bin_count: int | None = None,
    masked_kernel: bool = True,
    dtype: torch.dtype = torch.float32,
    fill_value: float = float("nan"),
    chunk_size: int | None = None,
) -> torch.Tensor:
    """pyradiomics voxel-based GLCM feature maps of one image, computed tile by tile (memory bounded).

    Args:
        image: (H, W) or (H, W, D) real tensor, any device; finite inside the reference region.
        mask: ROI of the same shape (non-zero = ROI, pyradiomics' ``label``); None = the whole image.
        features: names among :data:`GLCM_FEATURES`.
        kernel_radius: r >= 1 (pyradiomics ``kernelRadius``).
        bin_width: pyradiomics ``binWidth`` (used when ``bin_count`` is None).
        bin_count: pyradiomics ``binCount``.
        masked_kernel: pyradiomics ``maskedKernel``: pairs only between ROI voxels, binning over the ROI; else
            pairs between any voxels and binning over the ROI's bounding box padded by r.
        dtype: working and output float dtype (float64 reproduces pyradiomics to round-off).
        fill_value: value where pyradiomics gives none (outside the ROI, or no pair in the kernel).
        chunk_size: edge length of the tiles, each read with an r-voxel halo on every side; None = the largest
            whose working tensors stay within :data:`DEFAULT_TILE_BYTES`. Results do not depend on it.

    Returns:
        (F, H, W[, D]) maps of ``dtype`` on ``image``'s device.
    """
    r = int(kernel_radius)
    roi = None if mask is None else mask.to(device=image.device) != 0
    if roi is not None and not bool(roi.any()):
        raise ValueError("mask must contain at least one ROI voxel (non-zero), got an empty mask.")
    if roi is not None and bool(roi.all()):
        roi = None  # a whole-image ROI: same maps as no mask, by the faster path
    if image.dtype in (torch.uint16, torch.uint32, torch.uint64):  # few torch ops support these
        image = image.to(torch.int64)
    # 1. bin edges over the reference region, in the dtype pyradiomics would use
    if roi is None:
        reference = image
    elif masked_kernel:
        reference = image[roi]
    else:
        reference = image[_bounding_box(roi, r)]
    lo, hi = reference.min(), reference.max()
    if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        raise ValueError("image must be finite inside the mask (or everywhere without a mask): replace NaN/inf.")
    ref_dtype = _reference_dtype(image.dtype)
    if ref_dtype == np.float32:
        lo_np, hi_np = np.float32(lo.item()), np.float32(hi.item())
    else:
        lo_np, hi_np = np.float64(lo.item()), np.float64(hi.item())
    edges = bin_edges(lo_np, hi_np, bin_width, bin_count)
    n_gray = int(discretise(hi.reshape(1), edges)[0])
    # 2. directions pyradiomics keeps (with a masked kernel: those with a pair of ROI voxels somewhere)
    directions = glcm_directions(image.shape)
    valid_all = roi if (roi is not None and masked_kernel) else None
    kept = None
    if valid_all is not None:
        kept = []
        for a in directions:
            lower = tuple(slice(None) if o == 0 else slice(0, -1) if o > 0 else slice(1, None) for o in a)
            upper = tuple(slice(None) if o == 0 else slice(1, None) if o > 0 else slice(0, -1) for o in a)
            kept.append(bool((valid_all[lower] & valid_all[upper]).any()))
    # 3. tiles with an r-voxel halo on every side
    if chunk_size is None:
        budget = DEFAULT_TILE_BYTES // ((len(features) + 1) * torch.empty((), dtype=dtype).element_size())
        chunk_size = max(image.shape)
        while chunk_size > 1 and math.prod(min(n, chunk_size + 2 * r) for n in image.shape) > budget:
            chunk_size = max(1, int(chunk_size * 0.9))
    out = torch.empty((len(features), *image.shape), dtype=dtype, device=image.device)
    for starts in itertools.product(*(range(0, n, chunk_size) for n in image.shape)):
        core = tuple(slice(s, min(s + chunk_size, n)) for s, n in zip(starts, image.shape))
        halo = tuple(slice(max(c.start - r, 0), min(c.stop + r, n)) for c, n in zip(core, image.shape))
        levels = discretise(image[halo], edges).to(dtype)
        valid = None if valid_all is None else valid_all[halo]
        maps = glcm_feature_maps(levels, r, features, valid, n_gray, kept)
        inner = tuple(slice(c.start - h.start, c.stop - h.start) for c, h in zip(core, halo))
        out[(slice(None), *core)] = maps[(slice(None), *inner)]
    if roi is not None:
        out.masked_fill_(~roi, fill_value)
    if not math.isnan(fill_value):
        out.masked_fill_(torch.isnan(out), fill_value)
    return out
