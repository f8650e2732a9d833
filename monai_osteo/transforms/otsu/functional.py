"""Batched global and local thresholds in torch: Otsu, GHT, adaptive mean and adaptive gaussian.

Every function works on a whole batch at once (one threshold per image, never one per batch), on the
device of its input, with no Python loop over images (on CPU the histogram walks cache-sized blocks of
images, each block vectorised).

Histogram thresholds (``otsu``, ``ght``) bin each image over its own ``[min, max]`` exactly like
``skimage.filters.threshold_otsu(image, nbins)`` does for a floating-point image (``numpy.histogram``
with ``nbins`` equal bins, edges ``linspace(min, max, nbins + 1)`` in the image's dtype, last bin closed):
the counts are identical, bin for bin. The threshold is the centre of the bin after which the histogram is
split, and the foreground is ``image > threshold`` (skimage's convention). Integer images are binned like
float images here, whereas skimage gives every integer value its own bin, so cast an integer image to
float before comparing with skimage. The split criteria are evaluated in float64, also for float32
images, where skimage uses float32 arithmetic: the thresholds are then identical except where skimage's
float32 round-off breaks a near-tie of the criterion (adjacent bins), or where float32 is ill-conditioned
(a narrow range far from zero, e.g. [1000, 1001]), in which case skimage's threshold is the inaccurate one.

Local thresholds (``adaptive_mean``, ``adaptive_gaussian``) follow ``skimage.filters.threshold_local``
(``method="mean"`` / ``"gaussian"``): threshold map = local (gaussian-weighted) mean over a ``block_size``
window minus ``offset``, borders extended by half-sample symmetric reflection (``scipy.ndimage``'s
``mode="reflect"``: ``d c b a | a b c d | d c b a``), gaussian ``sigma = (block_size - 1) / 6`` truncated at
``4 sigma``. OpenCV's ``adaptiveThreshold`` differs: replicated borders and
``sigma = 0.3 * ((block_size - 1) / 2 - 1) + 0.8``; pass that ``sigma`` to reproduce its weights.

- [0] Otsu, 1979, A threshold selection method from gray-level histograms.
- [1] Barron, 2020, A generalization of Otsu's method and minimum error thresholding.
- [2] Chan, Lam and Zhu, 1998, Adaptive thresholding by variational method.
- [3] Singh and Cirrone, MedSASS, ``papers/medsass_otsu_self_supervision.txt`` §3.3 and §5.1 (Table 3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "HISTOGRAM_METHODS",
    "LOCAL_METHODS",
    "batched_histogram",
    "gaussian_kernel1d",
    "ght_criterion",
    "histogram_threshold",
    "local_threshold",
    "otsu_criterion",
    "rgb_to_gray",
    "separable_filter",
    "working_dtype",
]

HISTOGRAM_METHODS = ("otsu", "ght")
LOCAL_METHODS = ("adaptive_mean", "adaptive_gaussian")
#: ITU-R BT.601 luma weights (OpenCV's ``COLOR_RGB2GRAY``, used by the MedSASS code)
RGB_WEIGHTS = (0.299, 0.587, 0.114)
_CLIP = 1e-30  # Barron's clip of class weights and variances, [1]


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """Float dtype used for thresholding: float64 stays, other floats and <= 16-bit integers become float32.

    32/64-bit integers become float64 so that every value stays exact.
    """
    if dtype == torch.float64:
        return torch.float64
    if dtype.is_floating_point or dtype in (torch.bool, torch.uint8, torch.int8, torch.int16, torch.uint16):
        return torch.float32
    return torch.float64


def rgb_to_gray(img: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (OpenCV's RGB -> gray).

    Args:
        img: (..., 3, ...) RGB image(s), channels along ``channel_dim``, floating point.
        channel_dim: the channel axis.

    Returns:
        (..., 1, ...) gray image(s), same dtype.
    """
    r, g, b = img.unbind(channel_dim)
    return (r * RGB_WEIGHTS[0] + g * RGB_WEIGHTS[1] + b * RGB_WEIGHTS[2]).unsqueeze(channel_dim)


#: images per block on CPU are chosen so that a block holds about this many pixels (2 MiB of float32): the
#: binning is memory-bound and its temporaries then stay in cache (~1.4x faster than one whole-batch pass)
CPU_BLOCK_PIXELS = 1 << 19
#: float -> (magic, its bit pattern, int view): adding 2**23 (2**52) to a float in [0, 2**23) rounds it to an
#: integer held in the low mantissa bits, so a bin index becomes an integer without a conversion pass
_MAGIC = {
    torch.float32: (2.0**23, 0x4B000000, torch.int32),
    torch.float64: (2.0**52, 0x4330000000000000, torch.int64),
}


def _histogram_block(x: torch.Tensor, nbins: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Counts (b, nbins + 1), min (b, 1) and max (b, 1) of a block of images x (b, N); see batched_histogram."""
    batch = x.shape[0]
    lo = x.amin(dim=1, keepdim=True)
    hi = x.amax(dim=1, keepdim=True)
    step = (hi - lo) / nbins
    subnormal = (step > 0) & (step < torch.finfo(x.dtype).tiny)
    not_finite, tiny = torch.stack([~torch.isfinite(step).all(), subnormal.any()]).tolist()
    if not_finite:
        raise ValueError(
            "images must be finite with a finite range max - min: replace NaN/inf first (e.g. torch.nan_to_num)."
        )
    step = torch.where(step > 0, step, torch.ones_like(step))  # constant images: any step puts them in bin 0
    magic, magic_bits, int_dtype = _MAGIC[x.dtype]
    base = torch.arange(0, batch * (nbins + 1), nbins + 1, device=x.device, dtype=x.dtype)[:, None] + magic
    # t = base + round((v - min) / step): the image's slot plus the index of the value's nearest bin edge
    t = torch.sub(x, lo).div_(step).add_(base)
    if tiny:  # subnormal step: the ratio can overshoot nbins
        t.clamp_(base, base + nbins)
    edge = torch.sub(t, base).mul_(step).add_(lo)  # that edge exactly as numpy.linspace computes it
    torch.lt(x, edge, out=edge)  # 1.0 where the value lies below its nearest edge: it belongs to the bin below
    index = t.sub_(edge).view(int_dtype).sub_(magic_bits)
    counts = torch.bincount(index.view(-1), minlength=batch * (nbins + 1)).view(batch, nbins + 1)
    return counts, lo, hi


def batched_histogram(x: torch.Tensor, nbins: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image histogram over each image's own ``[min, max]``, bit-identical to ``numpy.histogram(image, nbins)``.

    Each value goes to the bin of its nearest edge (``round((v - min) / step)``), moved one bin down when it lies
    below that edge, the edge computed exactly as numpy's ``linspace`` does in the image's dtype
    (``k * step + min``): numpy's rule ``edge[k] <= v < edge[k + 1]`` (last bin closed) with no per-pixel
    gather. Counting is one ``bincount`` on ``bin + image * (nbins + 1)``. On CPU, blocks of images of about
    :data:`CPU_BLOCK_PIXELS` pixels are processed in turn (cache blocking); on other devices the whole batch.

    Args:
        x: (B, N) float32 or float64 images, flattened; finite values (else ValueError).
        nbins: number of bins.

    Returns:
        counts: (B, nbins) int64 pixel counts.
        centers: (B, nbins) bin centres, dtype of ``x`` (``(edge[k] + edge[k + 1]) / 2``).
        constant: (B,) bool, images whose min equals their max (all their pixels are in bin 0).
    """
    if x.dtype not in _MAGIC:
        raise ValueError(f"x must be float32 or float64, got {x.dtype}: cast it first (see working_dtype).")
    batch, pixels = x.shape
    if batch == 0 or pixels == 0:
        raise ValueError(f"x must hold at least one image with at least one pixel, got shape {tuple(x.shape)}.")
    block = max(1, CPU_BLOCK_PIXELS // max(pixels, 1)) if x.device.type == "cpu" else batch
    block = min(block, (1 << 22) // (nbins + 1))  # keeps image slots below the magic number's range
    parts = [_histogram_block(x[i : i + block], nbins) for i in range(0, batch, block)]
    counts, lo, hi = (torch.cat(p) for p in zip(*parts))
    counts = torch.cat([counts[:, : nbins - 1], counts[:, nbins - 1 :].sum(1, keepdim=True)], dim=1)
    constant = (hi == lo).squeeze(1)
    step = (hi - lo) / nbins
    edges = torch.arange(nbins + 1, device=x.device, dtype=x.dtype)[None] * step
    edges.add_(lo)
    edges[:, -1:] = hi  # numpy.linspace sets the last edge to the stop value
    centers = (edges[:, :-1] + edges[:, 1:]) / 2.0
    return counts, centers, constant


def _suffix_sum(z: torch.Tensor) -> torch.Tensor:
    """(B, K) -> (B, K), sum of z[:, k:] (a reversed cumulative sum, as skimage and Barron compute it)."""
    return z.flip(1).cumsum(1).flip(1)


def otsu_criterion(counts: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Otsu's between-class variance (unnormalised) of every split of a histogram, in float64, [0].

    Same formula and summation order as ``skimage.filters.threshold_otsu``:
    ``w0 w1 (mu0 - mu1)^2`` with class 0 = bins ``0..k`` and class 1 = bins ``k+1..K-1``.

    Args:
        counts: (B, K) histogram counts.
        centers: (B, K) bin centres.

    Returns:
        (B, K - 1) criterion, to maximise; ``-inf`` where a class is empty.
    """
    n = counts.to(torch.float64)
    nx = n * centers.to(torch.float64)
    w0, w1 = n.cumsum(1), _suffix_sum(n)
    mu0, mu1 = nx.cumsum(1) / w0, _suffix_sum(nx) / w1
    score = w0[:, :-1] * w1[:, 1:] * (mu0[:, :-1] - mu1[:, 1:]) ** 2
    return torch.nan_to_num(score, nan=-math.inf)


def ght_criterion(
    counts: torch.Tensor, nu: float = 0.0, tau: float = 0.0, kappa: float = 0.0, omega: float = 0.5
) -> torch.Tensor:
    """Generalized histogram thresholding (GHT) score of every split, in float64, [1].

    Bin positions are the bin indices ``0..K-1`` (Barron's default), so ``tau`` is in units of bins (one bin
    = 1/K of the image's range). With ``w_i, d_i`` the weight and the summed squared deviation of class ``i``,
    ``p_i = w_i / (w_0 + w_1)`` and ``omega_0 = omega, omega_1 = 1 - omega``::

        v_i = (p_i nu tau^2 + d_i) / (p_i nu + w_i)
        f   = sum_i  -d_i / v_i - w_i log v_i + 2 (w_i + kappa omega_i) log w_i

    Weights and variances are clipped at 1e-30 as in [1]; a class spanning one occupied bin gets ``d_i = 0``
    exactly (no round-off residue). Defaults ``nu = tau = kappa = 0, omega = 0.5`` are
    Barron's and give minimum error thresholding (Kittler & Illingworth); ``nu -> inf, tau -> 0`` gives Otsu's
    method (the score tends to ``-(d_0 + d_1) / tau^2``); large ``kappa`` gives the ``omega``-percentile.

    Args:
        counts: (B, K) histogram counts.
        nu, tau: strength and scale (bins) of the scaled inverse chi-squared prior on the class variances.
        kappa, omega: strength and mode of the beta prior on the class-0 probability.

    Returns:
        (B, K - 1) score of the split after bin k, to maximise.
    """
    n = counts.to(torch.float64)
    x = torch.arange(n.shape[1], device=n.device, dtype=torch.float64)
    nx, nxx = n * x, n * x * x
    w0, w1 = n.cumsum(1)[:, :-1], _suffix_sum(n)[:, 1:]
    s0, s1 = nx.cumsum(1)[:, :-1], _suffix_sum(nx)[:, 1:]
    q0, q1 = nxx.cumsum(1)[:, :-1], _suffix_sum(nxx)[:, 1:]
    w0, w1 = w0.clamp_min(_CLIP), w1.clamp_min(_CLIP)
    p0, p1 = w0 / (w0 + w1), w1 / (w0 + w1)
    occupied = (n > 0).to(torch.int64)  # a class spanning a single occupied bin has exactly zero spread
    single0, single1 = occupied.cumsum(1)[:, :-1] <= 1, _suffix_sum(occupied)[:, 1:] <= 1
    d0 = (q0 - s0 * s0 / w0).clamp_min(0.0).masked_fill(single0, 0.0)  # summed squared deviation from the mean
    d1 = (q1 - s1 * s1 / w1).clamp_min(0.0).masked_fill(single1, 0.0)
    v0 = ((p0 * nu * tau**2 + d0) / (p0 * nu + w0)).clamp_min(_CLIP)
    v1 = ((p1 * nu * tau**2 + d1) / (p1 * nu + w1)).clamp_min(_CLIP)
    f0 = -d0 / v0 - w0 * v0.log() + 2 * (w0 + kappa * omega) * w0.log()
    f1 = -d1 / v1 - w1 * v1.log() + 2 * (w1 + kappa * (1 - omega)) * w1.log()
    return f0 + f1


def histogram_threshold(
    x: torch.Tensor,
    method: str = "otsu",
    nbins: int = 256,
    nu: float = 0.0,
    tau: float = 0.0,
    kappa: float = 0.0,
    omega: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One global threshold per image: Otsu [0] or GHT [1] on a ``nbins`` histogram of the image's range.

    Args:
        x: (B, N) floating-point images, flattened; finite values.
        method: ``"otsu"`` or ``"ght"``.
        nbins: number of histogram bins (skimage's default 256).
        nu, tau, kappa, omega: GHT hyperparameters (see :func:`ght_criterion`), ignored by Otsu.

    Returns:
        thresholds: (B,) dtype of ``x``; foreground is ``x > threshold``. A constant image gets its value
            (all background), as skimage returns.
        constant: (B,) bool, the constant images.
    """
    if method not in HISTOGRAM_METHODS:
        raise ValueError(f"method must be one of {HISTOGRAM_METHODS}, got {method!r}.")
    counts, centers, constant = batched_histogram(x, nbins)
    if method == "otsu":
        score = otsu_criterion(counts, centers)
    else:
        score = ght_criterion(counts, nu=nu, tau=tau, kappa=kappa, omega=omega)
    split = score.argmax(dim=1, keepdim=True)  # first maximum, as numpy.argmax in skimage
    thresholds = centers.gather(1, split).squeeze(1)
    thresholds = torch.where(constant, x[:, 0], thresholds)
    return thresholds, constant


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised 1-D gaussian of radius ``int(truncate * sigma + 0.5)``, as ``scipy.ndimage.gaussian_filter``."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 / sigma**2 * t * t) if sigma > 0 else (t == 0).to(torch.float64)
    return (phi / phi.sum()).to(dtype)


def _pad_symmetric(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Half-sample symmetric padding (scipy ``mode="reflect"``), repeated while ``pad`` exceeds the size."""
    while pad > 0:
        size = x.shape[dim]
        p = min(pad, size)
        left, right = x.narrow(dim, 0, p).flip(dim), x.narrow(dim, size - p, p).flip(dim)
        x = torch.cat([left, x, right], dim=dim)
        pad -= p
    return x


def separable_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every spatial axis of ``x`` with a centred odd 1-D kernel, symmetric-reflect borders.

    Args:
        x: (B, *spatial) images, 2 or 3 spatial dims.
        kernel: (k,) odd-length kernel, dtype of ``x``.

    Returns:
        (B, *spatial) filtered images.
    """
    spatial = x.ndim - 1
    conv = {2: F.conv2d, 3: F.conv3d}[spatial]
    radius = kernel.numel() // 2
    y = x.unsqueeze(1)
    for axis in range(spatial):
        shape = [1, 1] + [1] * spatial
        shape[2 + axis] = kernel.numel()
        y = conv(_pad_symmetric(y, radius, 2 + axis), kernel.to(device=x.device, dtype=x.dtype).view(shape))
    return y.squeeze(1)


def local_threshold(
    x: torch.Tensor,
    block_size: int = 11,
    method: str = "adaptive_mean",
    offset: float = 0.0,
    sigma: float | None = None,
) -> torch.Tensor:
    """Adaptive threshold map: local (gaussian-weighted) mean minus ``offset``, [2], as skimage ``threshold_local``.

    Args:
        x: (B, *spatial) floating-point images, 2 or 3 spatial dims.
        block_size: odd window size (>= 3), the same along every axis.
        method: ``"adaptive_mean"`` (box mean over the window) or ``"adaptive_gaussian"``.
        offset: subtracted from the local mean (intensity units).
        sigma: gaussian standard deviation in pixels; default ``(block_size - 1) / 6`` (skimage).

    Returns:
        (B, *spatial) threshold map, dtype of ``x``; foreground is ``x > map``.
    """
    if method not in LOCAL_METHODS:
        raise ValueError(f"method must be one of {LOCAL_METHODS}, got {method!r}.")
    if block_size < 3 or block_size % 2 == 0:
        raise ValueError(f"block_size must be an odd integer >= 3, got {block_size!r}.")
    if method == "adaptive_mean":
        kernel = torch.full((block_size,), 1.0 / block_size, dtype=x.dtype)
    else:
        kernel = gaussian_kernel1d((block_size - 1) / 6.0 if sigma is None else float(sigma), dtype=x.dtype)
    return separable_filter(x, kernel) - offset
