"""Letterbox: zero-pad an image (centred) to the network's aspect ratio, then resize it; invertible.

Training, validation and inference of the bone segmentation share this one path, so a radiograph of another
aspect ratio is never distorted. MONAI has ``ResizeWithPadOrCrop`` (pads or crops to a fixed size without
scaling) and ``Resize(size_mode="longest")`` (keeps the aspect ratio but gives a size that depends on the
input); neither maps every input to one fixed (h, w) without distortion, so this composes MONAI's invertible
``Pad`` and ``Resize`` (both traced, so ``Invertd`` maps predictions back to the radiograph's grid).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.config import NdarrayOrTensor
from monai.transforms import InvertibleTransform, Pad, Resize, Transform
from monai.utils import TransformBackends, convert_to_tensor

__all__ = ["CropLetterbox", "Letterbox", "letterbox_padding", "letterbox_window"]


def letterbox_padding(shape: Sequence[int], ratio: float) -> list[tuple[int, int]]:
    """Zero padding ((top, bottom), (left, right)) that gives a (H, W) image the height/width ``ratio``.

    No padding when the ratio already matches within one pixel; otherwise the shorter side is padded, centred
    (the extra pixel of an odd padding goes to the bottom/right).
    """
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1 or ratio <= 0:
        raise ValueError(f"shape must be positive and ratio > 0, got {tuple(shape)!r}, {ratio!r}.")
    if abs(h / w - ratio) * w <= 1.0:
        return [(0, 0), (0, 0)]
    hp, wp = (h, round(h / ratio)) if h / w > ratio else (round(w * ratio), w)
    top, left = (hp - h) // 2, (wp - w) // 2
    return [(top, hp - h - top), (left, wp - w - left)]


class Letterbox(InvertibleTransform):
    """Pad a channel-first 2-D image to the aspect ratio of ``spatial_size`` (centred zeros), then resize to it.

    Args:
        spatial_size: (h, w) output size.
        mode: interpolation of the resize ("area" for radiographs, "nearest-exact" for label maps; see
            ``monai.transforms.Resize``).
        anti_aliasing: as ``monai.transforms.Resize`` (only with bilinear/bicubic modes).

    ``inverse`` undoes the resize and the padding (MONAI's traced ``Resize`` and ``Pad``), e.g. through
    ``monai.transforms.Invertd`` on a prediction.
    """

    backend = Resize.backend

    def __init__(self, spatial_size: Sequence[int], mode: str = "area", anti_aliasing: bool = False) -> None:
        size = tuple(int(s) for s in spatial_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"spatial_size must be (h, w) with positive sides, got {spatial_size!r}.")
        self.spatial_size = size
        self.ratio = size[0] / size[1]
        self.pad = Pad(mode="constant")
        self.resize = Resize(spatial_size=size, mode=mode, anti_aliasing=anti_aliasing)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        """(C, H, W) -> (C, h, w); a MetaTensor keeps the trace of both steps."""
        img = convert_to_tensor(img, track_meta=True)
        if img.ndim != 3:
            raise ValueError(f"Letterbox expects a channel-first 2-D image (C, H, W), got shape {tuple(img.shape)}.")
        to_pad = [(0, 0), *letterbox_padding(img.shape[1:], self.ratio)]
        return self.resize(self.pad(img, to_pad=to_pad))

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        return self.pad.inverse(self.resize.inverse(data))


def letterbox_window(ref: torch.Tensor) -> tuple[float, float, float, float]:
    """The image's window (top, bottom, left, right) as fractions of a letterboxed ``ref``, read from its trace.

    Args:
        ref: the output of :class:`Letterbox`, a MetaTensor whose ``applied_operations`` end with its pad and resize.
    """
    ops = getattr(ref, "applied_operations", None) or []
    pads = [op for op in ops if op.get("class") == "Pad"]
    if not pads:
        raise ValueError("ref must be a MetaTensor letterboxed by Letterbox(d) (its trace holds the padding); keep "
                         "track_meta on in the preprocessing, and do not invert it before this transform.")
    padded = pads[-1]["extra_info"]["padded"]
    (top, bottom), (left, right) = [tuple(int(v) for v in p) for p in padded[-2:]]
    orig = pads[-1]["orig_size"]
    h, w = int(orig[-2]), int(orig[-1])
    hp, wp = h + top + bottom, w + left + right
    return top / hp, (top + h) / hp, left / wp, (left + w) / wp


class CropLetterbox(Transform):
    """Crop a prediction made at the network's size to the image's window: undo the padding, not the resize.

    The bone patches are cut at the radiograph's native scale from class probabilities at the reduced size
    (:class:`~monai_osteo.transforms.ExtractBonePatches` upsamples only each bone's window), so the full-size
    inverse (``Invertd``) that upsamples every class channel is not needed.
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """(C, h, w) prediction on the letterboxed ``ref`` -> (C, h', w') inside the image's window."""
        top, bottom, left, right = letterbox_window(ref)
        h, w = pred.shape[-2:]
        r0, r1, c0, c1 = (round(v) for v in (top * h, bottom * h, left * w, right * w))
        return pred[..., r0:r1, c0:c1]
