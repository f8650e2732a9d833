"""Pure intensity maths used by the radiograph readers (no I/O, NumPy in and out)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "LUMA_WEIGHTS_BT601",
    "VOI_LUT_FUNCTIONS",
    "apply_voi_window",
    "min_max_normalize",
    "rgb_to_gray",
    "valid_spacing",
]

LUMA_WEIGHTS_BT601 = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of R, G and B."""

VOI_LUT_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
"""Values of DICOM VOI LUT Function (0028,1056) that :func:`apply_voi_window` implements."""


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """Convert a channel-last colour image to gray with the ITU-R BT.601 luma weights.

    The alpha channel of RGBA images is ignored; two-channel images (gray + alpha) return their first channel.

    Args:
        img: image of shape (H, W, C) with C in {2, 3, 4}.

    Returns:
        float64 image of shape (H, W).

    Raises:
        ValueError: when ``img`` is not (H, W, C) with C in {2, 3, 4}.

    - [0] ITU-R, 2011, Recommendation BT.601-7, Studio encoding parameters of digital television.
    """
    if img.ndim != 3 or img.shape[-1] not in (2, 3, 4):
        raise ValueError(f"img must have shape (H, W, C) with C in (2, 3, 4), got {tuple(img.shape)!r}.")
    img = np.asarray(img, dtype=np.float64)
    if img.shape[-1] == 2:
        return img[..., 0]
    return img[..., :3] @ np.asarray(LUMA_WEIGHTS_BT601)


def apply_voi_window(img: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Apply a DICOM VOI window (PS3.3 C.11.2.1.2) and map the result to [0, 1].

    ``LINEAR`` is the DICOM linear function (with its half-pixel offsets), ``LINEAR_EXACT`` the exact linear map
    ``(x - c) / w + 0.5`` and ``SIGMOID`` the logistic curve ``1 / (1 + exp(-4 (x - c) / w))``; the linear ones
    are clipped to [0, 1].

    Args:
        img: modality values (after rescale slope/intercept), any shape.
        center: window center (0028,1050).
        width: window width (0028,1051); > 1 for ``LINEAR``, > 0 otherwise.
        function: VOI LUT function (0028,1056), one of ``VOI_LUT_FUNCTIONS``.

    Returns:
        float64 array of the same shape as ``img`` with values in [0, 1].

    Raises:
        ValueError: when ``function`` is unknown or ``width`` is out of range.
    """
    function = function.upper()
    if function not in VOI_LUT_FUNCTIONS:
        raise ValueError(f"function must be one of {VOI_LUT_FUNCTIONS}, got {function!r}.")
    min_width = 1.0 if function == "LINEAR" else 0.0
    if not np.isfinite(center) or not np.isfinite(width) or width <= min_width:
        raise ValueError(f"width must be finite and > {min_width} (center finite) for {function}, got {width!r}.")
    x = np.asarray(img, dtype=np.float64)
    if function == "LINEAR":
        out = (x - (center - 0.5)) / (width - 1.0) + 0.5
    elif function == "LINEAR_EXACT":
        out = (x - center) / width + 0.5
    else:
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (x - center) / width, -700.0, 700.0)))
    return np.clip(out, 0.0, 1.0)


def min_max_normalize(img: np.ndarray) -> np.ndarray:
    """Rescale ``img`` linearly so that its minimum maps to 0 and its maximum to 1.

    Args:
        img: finite array, any shape, not constant.

    Returns:
        float64 array of the same shape with values in [0, 1].

    Raises:
        ValueError: when ``img`` is constant (the map is undefined).
    """
    x = np.asarray(img, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        raise ValueError(f"img must not be constant, got all values equal to {lo!r}.")
    return (x - lo) / (hi - lo)


def valid_spacing(values: Sequence[float] | None, n: int = 2) -> tuple[float, ...] | None:
    """Return ``values`` as a tuple of ``n`` floats when they are a usable pixel spacing, else None.

    Args:
        values: candidate spacing in mm (e.g. the values of DICOM PixelSpacing), or None.
        n: expected number of values.

    Returns:
        the spacing as floats, or None when absent, of the wrong length, non-finite or not positive
        (some exports write ``0.000\\0.000``).
    """
    if values is None:
        return None
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(np.isfinite(v) and v > 0 for v in out):
        return None
    return out
