"""Bring an image to what a 2-D network expects: the channel count (gray ↔ RGB, alpha dropped) and a fixed [0, 1]
intensity scale (by bit depth).

A folder of PNG/JPEG images mixes gray, RGB and RGBA files; MONAI's ``EnsureChannelFirst`` keeps whatever the file
has and ``RepeatChannel`` only repeats, so a network with ``in_channels=3`` fails on the first gray image (and one
with ``in_channels=1`` on the first colour one). This transform maps (C, *spatial) images to ``channels``:

- 1 -> 3: the gray channel repeated;
- 3 or 4 -> 1: ITU-R BT.601 luma of the first three channels (OpenCV's RGB -> gray, as the Otsu pseudo-masks);
- 4 -> 3: alpha dropped; 2 (gray + alpha) -> 1 or 3: alpha dropped first.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

__all__ = ["EnsureChannels", "EnsureChannelsd", "ScaleBitDepth", "ScaleBitDepthd"]

_LUMA = (0.299, 0.587, 0.114)


class EnsureChannels(Transform):
    """(C, *spatial) -> (``channels``, *spatial), C in 1..4; see the module docstring.

    Args:
        channels: 1 (gray) or 3 (RGB).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, channels: int = 3) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels!r}.")
        self.channels = channels

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False)
        c = x.shape[0] if x.ndim >= 3 else -1
        if c not in (1, 2, 3, 4):
            raise ValueError(f"image must be channel-first with 1-4 channels (gray, gray+alpha, RGB, RGBA), got shape "
                             f"{tuple(x.shape)}: load it with ensure_channel_first=True.")
        if c == 2:
            x, c = x[:1], 1
        elif c == 4:
            x, c = x[:3], 3
        if c != self.channels:
            if self.channels == 3:
                x = x.expand(3, *x.shape[1:])
            else:
                w = torch.tensor(_LUMA, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
                x = (x.to(w.dtype) * w.view(3, *([1] * (x.ndim - 1)))).sum(0, keepdim=True)
        return convert_to_dst_type(x.contiguous(), dst=img, dtype=x.dtype)[0]


class EnsureChannelsd(MapTransform):
    """Dictionary version of :class:`EnsureChannels`."""

    backend = EnsureChannels.backend

    def __init__(self, keys: KeysCollection, channels: int = 3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = EnsureChannels(channels)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class ScaleBitDepth(Transform):
    """Scale an image to [0, 1] by a **fixed** range: its bit depth's, never its own min and max.

    Per-image min-max scaling (MONAI ``ScaleIntensity``) makes every image span [0, 1], which turns a "fixed global
    threshold" into a per-image one and removes the brightness differences between images. This divides by
    ``2**bits - 1``; with ``bits=None`` the bit depth is the smallest of 8 and 16 that holds the image's maximum (8-bit
    PNG/JPEG -> /255, 16-bit PNG/TIFF -> /65535), and a float image already within [0, 1] is kept as it is. Values
    outside the range are clipped.

    Args:
        bits: 8, 16, or None (from the image, see above).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, bits: int | None = None) -> None:
        if bits is not None and not 1 <= int(bits) <= 32:
            raise ValueError(f"bits must be None or in 1..32, got {bits!r}.")
        self.bits = None if bits is None else int(bits)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False)
        if x.numel() == 0:
            raise ValueError("image must not be empty.")
        hi = float(x.max())
        if self.bits is not None:
            scale = 2.0**self.bits - 1
        elif not x.is_floating_point() or hi > 1.0:
            scale = 255.0 if hi <= 255 else 65535.0
        else:
            scale = 1.0
        y = (x.to(torch.float32) / scale).clamp_(0.0, 1.0)
        return convert_to_dst_type(y, dst=img, dtype=torch.float32)[0]


class ScaleBitDepthd(MapTransform):
    """Dictionary version of :class:`ScaleBitDepth`."""

    backend = ScaleBitDepth.backend

    def __init__(self, keys: KeysCollection, bits: int | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleBitDepth(bits)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d
