"""Window maths for constrained multi-crop: summed-area table, O(1) window fractions, vectorised sampling.

A window is ``(top, left, height, width)`` in pixels of the source image (H, W). The proposal is
torchvision's ``RandomResizedCrop`` (area scale uniform, aspect ratio log-uniform, integer position
uniform), conditioned on the window fitting inside the image; the constraint keeps windows whose
non-zero share is at least ``min_foreground``, measured exactly on the source region with a summed-area
table [1]. Candidates are drawn and evaluated in batches; the first feasible ones are kept, which gives
exactly the conditional distribution of rejection sampling (the paper's method [0]) and the same
number of tries per view, without a Python loop per try.

- [0] hand_xray_osteoporosis_journal, §"Multi-crop data augmentation" (≥ 10% non-zero per view).
- [1] Crow, 1984, Summed-area tables for texture mapping.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from monai.config import NdarrayOrTensor

__all__ = [
    "WindowSample",
    "draw_windows",
    "sample_windows",
    "summed_area_table",
    "window_fraction_map",
    "window_fractions",
    "window_sums",
]

_FALLBACK_SIZES = 8  # window sizes searched exhaustively when random candidates find no feasible window


class WindowSample(NamedTuple):
    """Windows chosen for one group of views.

    Attributes:
        windows: (V, 4) int64 ``(top, left, height, width)``.
        fractions: (V,) float64 non-zero share of each source window.
        constraint_met: (V,) bool, False where no window reaching ``min_foreground`` was found.
        tries: (V,) int64 proposals evaluated for each view (what a rejection sampler would have counted).
    """

    windows: np.ndarray
    fractions: np.ndarray
    constraint_met: np.ndarray
    tries: np.ndarray


def summed_area_table(mask: NdarrayOrTensor) -> NdarrayOrTensor:
    """Zero-padded summed-area table (integral image) of a 2-D indicator.

    Args:
        mask: (H, W) bool or integer array/tensor (non-zero = foreground).

    Returns:
        (H + 1, W + 1) integer table ``S`` with ``S[i, j] = sum(mask[:i, :j] != 0)`` (int32 below 2**31
        pixels, else int64); same type/device as input.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {tuple(mask.shape)!r}.")
    small = mask.shape[0] * mask.shape[1] < 2**31  # int32 is exact and faster
    if isinstance(mask, torch.Tensor):
        dtype = torch.int32 if small else torch.int64
        sat = torch.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=dtype, device=mask.device)
        sat[1:, 1:] = (mask != 0).to(dtype).cumsum(0).cumsum(1)
        return sat
    mask = np.asarray(mask)
    sat = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int32 if small else np.int64)
    np.cumsum(mask if mask.dtype == bool else mask != 0, axis=0, dtype=sat.dtype, out=sat[1:, 1:])
    np.cumsum(sat[1:, 1:], axis=1, out=sat[1:, 1:])
    return sat


def window_sums(sat: NdarrayOrTensor, windows: NdarrayOrTensor) -> NdarrayOrTensor:
    """Foreground pixel count of each window in O(1) per window.

    Args:
        sat: (H + 1, W + 1) table from :func:`summed_area_table`.
        windows: (N, 4) integer ``(top, left, height, width)``, inside the image.

    Returns:
        (N,) integer counts, exact.
    """
    if isinstance(sat, torch.Tensor):
        windows = torch.as_tensor(windows, dtype=torch.int64, device=sat.device)
    top, left, h, w = (windows[:, k] for k in range(4))
    return sat[top + h, left + w] - sat[top, left + w] - sat[top + h, left] + sat[top, left]


def window_fractions(sat: NdarrayOrTensor, windows: NdarrayOrTensor) -> NdarrayOrTensor:
    """Non-zero share of each window, ``count / (height * width)`` (float64).

    Args:
        sat: (H + 1, W + 1) table from :func:`summed_area_table`.
        windows: (N, 4) integer ``(top, left, height, width)``.

    Returns:
        (N,) float64 fractions in [0, 1].
    """
    sums = window_sums(sat, windows)
    if isinstance(sums, torch.Tensor):
        area = torch.as_tensor(windows, device=sums.device)[:, 2:].prod(1)
        return sums.double() / area.double()
    return sums / np.asarray(windows)[:, 2:].prod(1).astype(np.float64)


def window_fraction_map(sat: np.ndarray, height: int, width: int) -> np.ndarray:
    """Non-zero share of every window of one size, vectorised over all positions.

    Args:
        sat: (H + 1, W + 1) table from :func:`summed_area_table` (numpy).
        height: window height, 1..H.
        width: window width, 1..W.

    Returns:
        (H - height + 1, W - width + 1) float64; entry (i, j) is the window with top-left corner (i, j).
    """
    counts = sat[height:, width:] - sat[:-height, width:] - sat[height:, :-width] + sat[:-height, :-width]
    return counts / float(height * width)


def draw_windows(
    rng: np.random.RandomState,
    spatial_size: tuple[int, int],
    num: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> np.ndarray:
    """Draw ``num`` RandomResizedCrop proposals at once; those that do not fit are dropped.

    Same rule as ``torchvision.transforms.RandomResizedCrop.get_params``: area share uniform in ``scale``,
    aspect ratio (w / h) log-uniform in ``ratio``, sides rounded, top/left uniform integers.

    Args:
        rng: numpy random state (the transform's ``self.R``).
        spatial_size: image (H, W).
        num: proposals to draw.
        scale: (min, max) share of the image area.
        ratio: (min, max) aspect ratio width / height.

    Returns:
        (M, 4) int64 windows ``(top, left, height, width)``, M <= num, in draw order.
    """
    height, width = spatial_size
    u = rng.random_sample((4, num))
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * u[1])
    w = np.round(np.sqrt(area * aspect)).astype(np.int64)
    h = np.round(np.sqrt(area / aspect)).astype(np.int64)
    fit = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    h, w, u = h[fit], w[fit], u[:, fit]
    top = np.minimum((u[2] * (height - h + 1)).astype(np.int64), height - h)
    left = np.minimum((u[3] * (width - w + 1)).astype(np.int64), width - w)
    return np.stack([top, left, h, w], axis=1)


def _fallback(
    sat: np.ndarray, sizes: np.ndarray, count: int, min_foreground: float, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exhaustive search over all positions of a few proposal sizes, for views the random search missed.

    If some size has feasible positions, a size is picked with probability proportional to its feasible
    share (sampling-importance-resampling of the conditional law) and a feasible position uniformly.
    Otherwise each view takes the best available (max-fraction) window of one of the sizes, flagged.
    """
    maps = [window_fraction_map(sat, int(h), int(w)) for h, w in sizes]
    share = np.array([float(np.mean(m >= min_foreground)) for m in maps])
    windows, fractions, met = np.zeros((count, 4), np.int64), np.zeros(count), np.zeros(count, bool)
    for v in range(count):
        if share.sum() > 0:
            k = int(rng.choice(len(maps), p=share / share.sum()))
            flat = np.flatnonzero(maps[k] >= min_foreground)
        else:
            k = v % len(maps)
            flat = np.flatnonzero(maps[k] == maps[k].max())
        pos = int(flat[rng.randint(len(flat))])
        top, left = divmod(pos, maps[k].shape[1])
        windows[v] = (top, left, *sizes[k])
        fractions[v] = maps[k][top, left]
        met[v] = fractions[v] >= min_foreground
    return windows, fractions, met


def sample_windows(
    sat: np.ndarray,
    count: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    min_foreground: float,
    rng: np.random.RandomState,
    num_candidates: int = 64,
    max_candidates: int = 4096,
) -> WindowSample:
    """Draw ``count`` windows whose non-zero share is at least ``min_foreground``.

    Proposals come in vectorised batches (:func:`draw_windows`), are scored in O(1) each with the
    summed-area table, and the first feasible ones in draw order are kept: exactly the conditional law of
    rejection sampling [0]. The batch size adapts to the observed acceptance rate; after
    ``max_candidates`` proposals the remaining views are searched exhaustively over all positions of a
    few proposal sizes, and where no window of those sizes can meet the threshold the best available one
    is taken and flagged (``constraint_met=False``). An all-zero indicator is flagged at once.

    Args:
        sat: (H + 1, W + 1) numpy table from :func:`summed_area_table`.
        count: number of windows (views) wanted.
        scale: (min, max) share of the image area, as in ``RandomResizedCrop``.
        ratio: (min, max) aspect ratio width / height.
        min_foreground: minimum non-zero share in [0, 1]; 0 gives the unconstrained proposal.
        rng: numpy random state (the transform's ``self.R``).
        num_candidates: size of the first batch of proposals.
        max_candidates: proposals drawn at most before the exhaustive fallback.

    Returns:
        :class:`WindowSample` with (count, ...) arrays.
    """
    size = (sat.shape[0] - 1, sat.shape[1] - 1)
    windows, fractions, tries = [], [], []
    pending, drawn, batch, last = 0, 0, max(num_candidates, 1), np.zeros((0, 4), np.int64)
    if min_foreground > 0 and sat[-1, -1] == 0:  # nothing can be feasible: one batch for sizes/positions
        drawn = max_candidates - batch
    while len(windows) < count and drawn < max_candidates:
        n = min(batch, max_candidates - drawn)
        cand = draw_windows(rng, size, n, scale, ratio)
        drawn += n
        if len(cand) == 0:
            continue
        last = cand
        frac = window_fractions(sat, cand)
        ok = np.flatnonzero(frac >= min_foreground)
        prev = -1
        for p in ok[: count - len(windows)]:
            windows.append(cand[p])
            fractions.append(frac[p])
            tries.append(pending + p - prev)
            pending, prev = 0, p
        pending += len(cand) - 1 - prev
        missing = count - len(windows)
        rate = len(ok) / len(cand)
        batch = int(min(max_candidates, max(num_candidates, 2 * missing / max(rate, 1.0 / len(cand)))))
    met = [True] * len(windows)
    missing = count - len(windows)
    if missing:
        if len(last) == 0:  # pathological scale/ratio: the image centre, whole image
            last = np.array([[0, 0, *size]], np.int64)
        if sat[-1, -1] == 0 and min_foreground > 0:  # all zero: every window is equally bad, keep the proposals
            fb_windows = np.resize(last, (missing, 4))
            fb_fractions, fb_met = np.zeros(missing), np.zeros(missing, bool)
        else:
            fb_windows, fb_fractions, fb_met = _fallback(sat, last[:_FALLBACK_SIZES, 2:], missing, min_foreground, rng)
        windows.extend(fb_windows)
        fractions.extend(fb_fractions)
        met.extend(fb_met)
        tries.extend([pending] * missing)
    return WindowSample(
        windows=np.asarray(windows, np.int64).reshape(count, 4),
        fractions=np.asarray(fractions, np.float64),
        constraint_met=np.asarray(met, bool),
        tries=np.asarray(tries, np.int64),
    )
