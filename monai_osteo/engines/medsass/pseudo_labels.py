"""Otsu pseudo-labels made inside the training step: MedSASS Algorithm 1 as a MONAI ``prepare_batch``.

MONAI's ``SupervisedTrainer`` reads ``(image, label)`` from ``prepare_batch``; MedSASS has no label, its target is
the per-image Otsu mask of the *augmented* image (Algorithm 1: "Label_OTSU = OTSU_openCV(x)" on the same augmented
x the U-Net sees). Computing it here, after the batch reached the training device, keeps the trainer standard
(only the batch preparation differs), thresholds the whole batch in one set of torch ops on that device
(:class:`~monai_osteo.transforms.OtsuPseudoMask` with ``batched=True``), and makes every augmentation of the
preprocessing chain change the pseudo-label consistently with the image.

- [0] Singh & Cirrone, MedSASS, §3.3, Algorithm 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.engines.utils import PrepareBatch

from monai_osteo.transforms.otsu import OtsuPseudoMask

__all__ = ["FixedThresholdMask", "OtsuPseudoLabelBatch", "make_pseudo_masker"]


class FixedThresholdMask:
    """One global threshold for every image (MedSASS §3.3.3's foil: the network "merely learns to threshold").

    (B, C, *spatial) images -> (B, 1, *spatial) float masks of ``gray > threshold`` (``"bright"``), ``gray <
    threshold`` (``"dark"``), or per image the smaller of the two (``"minority"``); RGB is converted to gray with
    the BT.601 weights as :class:`~monai_osteo.transforms.OtsuPseudoMask`. ``threshold`` is in the units of the
    images (the bundle scales each image to [0, 1]).
    """

    def __init__(self, threshold: float = 0.5, foreground: str = "bright") -> None:
        if foreground not in ("bright", "dark", "minority"):
            raise ValueError(f"foreground must be 'bright', 'dark' or 'minority', got {foreground!r}.")
        self.threshold, self.foreground = float(threshold), foreground

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 3:
            w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, *([1] * (x.ndim - 2)))
            x = (x * w).sum(1, keepdim=True)
        elif x.shape[1] != 1:
            raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(x.shape)}.")
        bright = (x > self.threshold).float()
        if self.foreground == "bright":
            return bright
        dark = (x < self.threshold).float()
        if self.foreground == "dark":
            return dark
        flip = bright.flatten(1).mean(1) > 0.5
        return torch.where(flip.view(-1, *([1] * (x.ndim - 1))), dark, bright)


def make_pseudo_masker(method: str = "otsu", foreground: str = "bright", threshold_kwargs: Mapping | None = None):
    """Batched pseudo-mask function for ``method``: ``"fixed"`` (:class:`FixedThresholdMask`, kwarg ``threshold``)
    or any :class:`~monai_osteo.transforms.OtsuPseudoMask` method (``"otsu"``, ``"ght"``, ``"adaptive_mean"``,
    ``"adaptive_gaussian"``) with its kwargs."""
    kwargs = dict(threshold_kwargs or {})
    if method == "fixed":
        return FixedThresholdMask(foreground=foreground, **kwargs)
    return OtsuPseudoMask(method=method, batched=True, foreground=foreground, **kwargs)


class OtsuPseudoLabelBatch(PrepareBatch):
    """``prepare_batch`` returning ``(image, pseudo_mask)``: the batch image on ``device`` and its Otsu masks.

    Args:
        method: thresholding method of :class:`~monai_osteo.transforms.OtsuPseudoMask` (``"otsu"`` in MedSASS;
            ``"ght"``, ``"adaptive_mean"``, ``"adaptive_gaussian"`` for the paper's Table 3 ablation), or ``"fixed"``
            (one global threshold, :class:`FixedThresholdMask`).
        foreground: polarity: ``"bright"``, ``"dark"`` (e.g. skin lesions) or ``"minority"``; the paper does not
            say, see :class:`~monai_osteo.transforms.OtsuPseudoMask`.
        channels: channels of the image the threshold is computed on (e.g. ``[2]``: the DAPI channel of a
            fluorescence composite); ``None``: all channels (RGB converted to gray with the BT.601 weights as OpenCV).
        image_key: batch key of the image.
        threshold_kwargs: further :class:`~monai_osteo.transforms.OtsuPseudoMask` arguments (``nbins``,
            ``block_size``, ...).

    ``__call__(batchdata, device, non_blocking)`` -> ``(image, mask)``: (B, C, H, W) float image, (B, 1, H, W)
    float 0/1 mask on the same device.
    """

    def __init__(self, method: str = "otsu", foreground: str = "bright", channels: Sequence[int] | None = None,
                 image_key: str = "image", threshold_kwargs: Mapping | None = None) -> None:
        self.otsu = make_pseudo_masker(method, foreground, threshold_kwargs)
        self.channels = None if channels is None else [int(c) for c in channels]
        if self.channels is not None and len(self.channels) not in (1, 3):
            raise ValueError(f"channels must select 1 (gray) or 3 (RGB) channels, got {channels!r}.")
        self.image_key = image_key

    def pseudo_mask(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, 1, H, W) float masks, no gradient."""
        source = image if self.channels is None else image[:, self.channels]
        with torch.no_grad():
            return self.otsu(source.detach())

    def __call__(self, batchdata: Mapping, device: str | torch.device | None = None, non_blocking: bool = False,
                 **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if self.image_key not in batchdata:
            raise ValueError(f"batch must contain {self.image_key!r}, got keys {sorted(batchdata)}.")
        image = torch.as_tensor(batchdata[self.image_key]).to(device=device, non_blocking=non_blocking)
        if image.ndim < 4:
            raise ValueError(f"{self.image_key!r} must be a batch (B, C, H, W[, D]), got shape {tuple(image.shape)}.")
        if self.channels is not None and max(self.channels) >= image.shape[1]:
            raise ValueError(f"channels {self.channels} do not exist in images with {image.shape[1]} channels: set "
                             "otsu_channels to null (all channels) or to existing ones.")
        return image, self.pseudo_mask(image)
