"""Otsu pseudo-mask: the self-supervision target of MedSASS, one threshold per image, batched in torch.

MedSASS pre-trains a U-Net to predict the binary mask that Otsu's method gives for each input image
(converted to gray first); its ablation (Table 3) swaps Otsu for adaptive mean / adaptive gaussian
thresholding and for generalized histogram thresholding (GHT). MONAI's ``ForegroundMask(threshold="otsu")``
is the nearest peer but calls skimage image by image on the CPU, marks ``image <= threshold`` (dark
foreground) and has no batch mode, hence this transform.

- [0] Otsu, 1979, A threshold selection method from gray-level histograms.
- [1] Barron, 2020, A generalization of Otsu's method and minimum error thresholding.
- [2] Chan, Lam and Zhu, 1998, Adaptive thresholding by variational method.
- [3] Singh and Cirrone, MedSASS, ``papers/medsass_otsu_self_supervision.txt`` §3.3 and §5.1 (Table 3).
"""

from __future__ import annotations

import warnings

import torch
from monai.config import DtypeLike, NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, get_equivalent_dtype

from monai_osteo.transforms.otsu.functional import (
    HISTOGRAM_METHODS,
    LOCAL_METHODS,
    histogram_threshold,
    local_threshold,
    rgb_to_gray,
    working_dtype,
)

#: the polarities of :class:`OtsuPseudoMask`
FOREGROUNDS = ("bright", "dark", "minority")

__all__ = ["OtsuPseudoMask", "PSEUDO_MASK_METHODS"]

#: the thresholding methods of MedSASS Table 3
PSEUDO_MASK_METHODS = HISTOGRAM_METHODS + LOCAL_METHODS


class OtsuPseudoMask(Transform):
    """Binary pseudo-mask of each image by a per-image threshold (Otsu by default), MedSASS §3.3 [3].

    Input is channel-first, gray (C = 1) or RGB (C = 3, converted to gray with the ITU-R BT.601 weights
    0.299, 0.587, 0.114 as OpenCV does), 2-D or 3-D:

    - ``batched=False``: one image (C, H, W) or (C, H, W, D) -> mask (1, H, W[, D]);
    - ``batched=True``: a batch (B, C, H, W) or (B, C, H, W, D) -> masks (B, 1, H, W[, D]), every image
      thresholded on its own (the result equals a loop over images), in one set of torch ops.

    The layout is never guessed: a batch passed without ``batched=True`` is read as one 3-D image and is
    rejected unless B is 1 or 3.

    Methods (``method``):

    - ``"otsu"`` [0]: ``skimage.filters.threshold_otsu(gray, nbins)`` per image (same 256-bin histogram of the
      image's ``[min, max]``, same bin-centre threshold), foreground ``gray > threshold``;
    - ``"ght"`` [1]: generalized histogram thresholding on the same histogram, hyperparameters ``nu, tau``
      (``tau`` in bins), ``kappa, omega``; ``nu -> inf, tau -> 0`` gives Otsu. Barron's defaults (all 0,
      ``omega = 0.5``) give minimum error thresholding, which may isolate a lone extreme bin (its variance is
      clipped to 1e-30); a variance prior (``nu > 0, tau > 0``) avoids that;
    - ``"adaptive_mean"`` / ``"adaptive_gaussian"`` [2]: ``gray > local mean - offset`` over a ``block_size``
      window, as ``skimage.filters.threshold_local`` (see :mod:`~monai_osteo.transforms.otsu.functional`).

    Constant images (e.g. blank, all zeros) get an all-background mask and a warning, never NaN. Integer
    images are thresholded as float (skimage would give each integer value its own bin instead).

    Args:
        method: one of ``"otsu"``, ``"ght"``, ``"adaptive_mean"``, ``"adaptive_gaussian"``.
        batched: whether inputs carry a leading batch dimension (see above).
        nbins: histogram bins of ``"otsu"`` and ``"ght"`` (skimage's default 256).
        block_size: odd window size of the adaptive methods (OpenCV's usual 11).
        offset: constant subtracted from the local mean by the adaptive methods (intensity units).
        sigma: gaussian standard deviation (pixels) of ``"adaptive_gaussian"``; default ``(block_size - 1) / 6``.
        nu: GHT strength of the prior on the class variances (>= 0).
        tau: GHT scale of that prior, in histogram bins (>= 0).
        kappa: GHT strength of the prior on the class-0 probability (>= 0).
        omega: GHT mode of that prior, in [0, 1].
        dtype: dtype of the mask (default float32, 0/1); ``"bool"`` or ``"uint8"`` save memory.
        foreground: which side of the threshold is foreground: ``"bright"`` (default: ``gray > threshold``, skimage's
            convention, e.g. bone in a radiograph), ``"dark"`` (the mask of the negated image, computed exactly as
            for ``"bright"``: a dark skin lesion on lighter skin), or ``"minority"`` (per image, whichever of the
            bright and the dark mask covers at most half of the image: objects smaller than their background,
            whatever their polarity).

    Example::

        masks = OtsuPseudoMask(batched=True)(images)  # (B, 1, H, W) float32, on the images' device
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        method: str = "otsu",
        batched: bool = False,
        nbins: int = 256,
        block_size: int = 11,
        offset: float = 0.0,
        sigma: float | None = None,
        nu: float = 0.0,
        tau: float = 0.0,
        kappa: float = 0.0,
        omega: float = 0.5,
        dtype: DtypeLike | torch.dtype = "float32",
        foreground: str = "bright",
    ) -> None:
        if foreground not in FOREGROUNDS:
            raise ValueError(f"foreground must be one of {FOREGROUNDS}, got {foreground!r}.")
        if method not in PSEUDO_MASK_METHODS:
            raise ValueError(f"method must be one of {PSEUDO_MASK_METHODS}, got {method!r}.")
        if not isinstance(nbins, int) or nbins < 2:
            raise ValueError(f"nbins must be an integer >= 2, got {nbins!r}.")
        if not isinstance(block_size, int) or block_size < 3 or block_size % 2 == 0:
            raise ValueError(f"block_size must be an odd integer >= 3, got {block_size!r}.")
        if sigma is not None and sigma <= 0:
            raise ValueError(f"sigma must be positive or None (skimage's (block_size - 1) / 6), got {sigma!r}.")
        for name, value in (("nu", nu), ("tau", tau), ("kappa", kappa)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}.")
        if not 0.0 <= omega <= 1.0:
            raise ValueError(f"omega must be in [0, 1], got {omega!r}.")
        self.method = method
        self.batched = batched
        self.nbins = nbins
        self.block_size = block_size
        self.offset = float(offset)
        self.sigma = sigma
        self.ght = {"nu": float(nu), "tau": float(tau), "kappa": float(kappa), "omega": float(omega)}
        self.dtype = dtype
        self.foreground = foreground
        self._torch_dtype = get_equivalent_dtype(dtype, torch.Tensor)

    def _gray_batch(self, img: torch.Tensor, batched: bool) -> torch.Tensor:
        """Validate the layout and return (B, 1, *spatial) gray images in the working float dtype."""
        expected = "(B, C, H, W) or (B, C, H, W, D)" if batched else "(C, H, W) or (C, H, W, D)"
        if img.ndim != (4 if batched else 3) and img.ndim != (5 if batched else 4):
            hint = "" if batched else "; for a batch set batched=True"
            raise ValueError(
                f"img must be channel-first {expected}, got shape {tuple(img.shape)}: add a channel dim "
                f"(e.g. monai.transforms.EnsureChannelFirst){hint}."
            )
        x = img if batched else img.unsqueeze(0)
        if x.numel() == 0:
            raise ValueError(f"img must not be empty, got shape {tuple(img.shape)}.")
        if x.shape[1] not in (1, 3):
            hint = "" if batched else "; if this is a batch (B, C, H, W), set batched=True"
            raise ValueError(
                f"img must have 1 (gray) or 3 (RGB) channels along dim {int(batched)}, got {x.shape[1]} "
                f"(shape {tuple(img.shape)}): select the channels first (e.g. img[:3] to drop alpha){hint}."
            )
        x = x.to(working_dtype(x.dtype))
        return rgb_to_gray(x, channel_dim=1) if x.shape[1] == 3 else x

    def _threshold(self, gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, *spatial) masks ``gray > threshold`` of (B, 1, *spatial) gray images, and which were constant."""
        flat = gray.reshape(gray.shape[0], -1)
        mask = torch.empty(gray.shape, dtype=self._torch_dtype, device=gray.device)
        if self.method in HISTOGRAM_METHODS:
            thresholds, constant = histogram_threshold(flat, self.method, self.nbins, **self.ght)
            torch.gt(flat, thresholds[:, None], out=mask.view(flat.shape))
        else:
            lo, hi = flat.amin(dim=1), flat.amax(dim=1)
            if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):
                raise ValueError("img must be finite: replace NaN/inf first (e.g. torch.nan_to_num).")
            constant = hi == lo
            local = local_threshold(gray[:, 0], self.block_size, self.method, self.offset, self.sigma)
            torch.gt(gray[:, 0], local, out=mask[:, 0])
            mask[constant] = 0
        return mask, constant

    def __call__(self, img: NdarrayOrTensor, batched: bool | None = None) -> NdarrayOrTensor:
        """Threshold each image of ``img``.

        Args:
            img: (C, H, W[, D]) image, or (B, C, H, W[, D]) batch with ``batched``; numpy, torch or MetaTensor.
            batched: overrides the constructor's ``batched`` for this call.

        Returns:
            (1, H, W[, D]) mask, or (B, 1, H, W[, D]) masks, of ``dtype``, in ``img``'s type and device (a
            MetaTensor keeps its metadata).
        """
        batched = self.batched if batched is None else batched
        gray = self._gray_batch(convert_to_tensor(img, track_meta=False), batched)
        mask, constant = self._threshold(-gray if self.foreground == "dark" else gray)
        if self.foreground == "minority":
            dark, _ = self._threshold(-gray)
            flip = mask.reshape(mask.shape[0], -1).float().mean(1) > 0.5
            mask[flip] = dark[flip]
        n_constant = int(constant.sum())
        if n_constant:
            warnings.warn(
                f"{n_constant} of {gray.shape[0]} image(s) are constant (min == max, e.g. blank): "
                "their pseudo-masks are all background.",
                stacklevel=2,
            )
        if not batched:
            mask = mask[0]
        return convert_to_dst_type(mask, dst=img, dtype=self.dtype)[0]
