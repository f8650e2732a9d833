"""Pure maths of bone-patch extraction: full-resolution labels, largest component per bone, square Hadamard crops.

The hand paper derives one image segment per target bone "using a simple Hadamard multiplication" of the
radiograph with the predicted mask, seven per radiograph (ulna, radius, M1-M5), fewer when a bone is
hidden by accessories or an unusual pose. These functions are the steps of that operation; the transform
classes in :mod:`monai_osteo.transforms.bone.array` chain them and attach metadata.

- [0] Multi-crop data augmentation (first paragraph), hand X-ray osteoporosis screening journal paper
  (``papers/hand_xray_osteoporosis_journal.txt``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "resolve_margin",
    "resolve_min_area",
    "mask_to_labels",
    "largest_component_per_label",
    "square_window",
    "place_in_window",
    "hadamard_patch",
]

#: relative tolerance on the row and column scale factors between a reduced-resolution mask and the image
ASPECT_TOLERANCE = 0.05
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity


def resolve_margin(margin: float, extent: int) -> int:
    """Margin in pixels: ``margin`` pixels if ``margin >= 1``, else ``round(margin * extent)``.

    Args:
        margin: pixels (>= 1) or a fraction in [0, 1) of ``extent``.
        extent: the longer side of the bone's bounding box in pixels.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (pixels if >= 1, else a fraction of the bbox side), got {margin!r}.")
    return int(round(margin)) if margin >= 1 else int(round(margin * extent))


def resolve_min_area(min_area: float, image_area: int) -> float:
    """Minimum component area in pixels: ``min_area`` if ``>= 1``, else ``min_area * image_area``.

    Args:
        min_area: pixels (>= 1) or a fraction in [0, 1) of the full-resolution image area.
        image_area: H * W of the full-resolution image.
    """
    if min_area < 0:
        raise ValueError(f"min_area must be >= 0 (pixels if >= 1, else a fraction of the image area), "
                         f"got {min_area!r}.")
    return float(min_area) if min_area >= 1 else float(min_area) * image_area


def _check_aspect(mask_size: Sequence[int], spatial_size: Sequence[int]) -> None:
    fr, fc = spatial_size[0] / mask_size[0], spatial_size[1] / mask_size[1]
    if abs(fr - fc) > max(fr, fc) * (ASPECT_TOLERANCE + 1.0 / min(mask_size)):
        raise ValueError(
            f"label must have the image's aspect ratio to be upsampled to it, got label size {tuple(mask_size)} "
            f"for image size {tuple(spatial_size)} (row factor {fr:.3f}, column factor {fc:.3f}); resize the mask "
            "without padding, or remove the letterbox padding before this transform."
        )


def mask_to_labels(mask: torch.Tensor, spatial_size: Sequence[int], threshold: float | None = None) -> torch.Tensor:
    """Bring a label map or class probabilities to full resolution and return a uint8 label map.

    A single-channel ``mask`` is a label map: it is rounded and upsampled with centred nearest neighbour
    (``nearest-exact``, so a label pixel covers the full-resolution pixels whose centres it contains).
    A multi-channel ``mask`` holds per-class probabilities (or logits, or one-hot), channel 0 the
    background: they are upsampled bilinearly (``align_corners=False``) and then reduced to labels, so the
    boundary is placed where the interpolated probabilities cross rather than on the coarse grid.

    Args:
        mask: (1, h, w) label map or (C, h, w) class probabilities, any device.
        spatial_size: (H, W) of the full-resolution image.
        threshold: probabilities only. ``None``: label = argmax over all C channels (background included).
            A float: label = the most probable bone channel (1..C-1) where its probability is
            ``>= threshold``, background elsewhere; the background channel is then ignored, which suits
            sigmoid (multi-label) outputs and lets a user trade recall for precision.

    Returns:
        (H, W) uint8 label map on ``mask``'s device.
    """
    if mask.ndim != 3:
        raise ValueError(f"label must be channel-first (C, H, W), got shape {tuple(mask.shape)}.")
    size = tuple(int(s) for s in spatial_size)
    same = tuple(mask.shape[1:]) == size
    if not same:
        _check_aspect(mask.shape[1:], size)
    if mask.shape[0] == 1:
        lab = mask[0]
        if lab.dtype != torch.uint8:
            lab = (lab.round() if lab.is_floating_point() else lab).clamp(0, 255).to(torch.uint8)
        if not same:
            lab = torch.nn.functional.interpolate(lab[None, None].float(), size=size, mode="nearest-exact")[0, 0]
            lab = lab.to(torch.uint8)
        return lab
    if mask.shape[0] > 256:
        raise ValueError(f"label must have at most 256 probability channels, got {mask.shape[0]}.")
    prob = mask if mask.is_floating_point() else mask.float()
    if threshold is None and not same:
        return _upsampled_argmax(prob, size)
    if not same:
        prob = torch.nn.functional.interpolate(prob[None], size=size, mode="bilinear", align_corners=False)[0]
    if threshold is None:
        return prob.argmax(0).to(torch.uint8)
    best, idx = prob[1:].max(0)
    return torch.where(best >= threshold, idx + 1, 0).to(torch.uint8)


def largest_component_per_label(labels: np.ndarray, values: Sequence[int]) -> dict[int, tuple]:
    """Largest 8-connected component of each label value, its bounding box and area.

    One ``scipy.ndimage.find_objects`` pass gives the bounding box of every label; the connected
    components of a bone are then labelled inside that box only (``scipy.ndimage.label``, 8-connectivity),
    instead of labelling the whole image once per bone as MONAI's ``KeepLargestConnectedComponent`` does.
    MONAI's ``get_largest_connected_component_mask`` would fit the per-box step, but it retries importing
    cuCIM on every call (~0.25 ms, 40% of this function's time on a 768-row radiograph), so the three lines
    are written here. Ties between equal components go to the first in raster order.

    Args:
        labels: (H, W) integer label map at full resolution, 0 = background.
        values: label values to look for.

    Returns:
        ``{value: (component, bbox, area)}`` for each value present: ``component`` the (h, w) bool mask of
        the largest component cropped to ``bbox = (r0, c0, r1, c1)`` (half-open, full-resolution pixel
        indices) and ``area`` its pixel count. Values absent from ``labels`` are left out.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2D (H, W) label map, got shape {labels.shape}.")
    boxes = ndimage.find_objects(labels, max_label=max(values, default=0))
    out: dict[int, tuple] = {}
    for v in values:
        sl = boxes[v - 1] if v >= 1 else None
        if sl is None:
            continue
        comp, n = ndimage.label(labels[sl] == v, structure=_EIGHT)
        if n > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            comp = comp == sizes.argmax()
        else:
            comp = comp.astype(bool)
        rows = np.flatnonzero(comp.any(1))
        cols = np.flatnonzero(comp.any(0))
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        comp = comp[r0:r1, c0:c1]
        bbox = (sl[0].start + r0, sl[1].start + c0, sl[0].start + r1, sl[1].start + c1)
        out[v] = (np.ascontiguousarray(comp), bbox, int(comp.sum()))
    return out


def square_window(bbox: Sequence[int], margin: float) -> tuple[int, int, int]:
    """Square window centred on ``bbox``: the longer side plus ``margin`` on each side.

    Args:
        bbox: (r0, c0, r1, c1), half-open.
        margin: pixels (>= 1) or fraction in [0, 1) of the bbox's longer side, added on every side.

    Returns:
        ``(side, top, left)``: the window is rows ``[r0 - top, r0 - top + side)`` and columns
        ``[c0 - left, c0 - left + side)``; when the padding is odd the extra pixel goes after (bottom/right),
        as in MONAI's ``SpatialPad(method="symmetric")``.
    """
    h, w = bbox[2] - bbox[0], bbox[3] - bbox[1]
    m = resolve_margin(margin, max(h, w))
    side = max(h, w) + 2 * m
    return side, (side - h) // 2, (side - w) // 2


def place_in_window(x: torch.Tensor, side: int, top: int, left: int) -> torch.Tensor:
    """Zero-pad a (C, h, w) crop into a (C, side, side) square with its corner at (top, left)."""
    out = x.new_zeros((x.shape[0], side, side))
    out[:, top:top + x.shape[1], left:left + x.shape[2]] = x
    return out


def hadamard_patch(img: torch.Tensor, component: torch.Tensor, bbox: Sequence[int], side: int, top: int,
                   left: int) -> torch.Tensor:
    """Image ⊙ bone mask inside the bbox, placed at (top, left) in a zero (C, side, side) patch.

    Everything outside the bbox is zero after the Hadamard product, so the window never needs pixels
    outside the image, even when the margin reaches past its border.

    Args:
        img: (C, H, W) full-resolution image.
        component: (h, w) bool mask of the bone inside ``bbox``, on ``img``'s device.
        bbox: (r0, c0, r1, c1) of the component.
        side, top, left: from :func:`square_window`.

    Returns:
        (C, side, side) patch with ``img``'s dtype and device.
    """
    r0, c0, r1, c1 = bbox
    # multiply in the image's dtype: torch does not promote uint16 with bool
    return place_in_window(img[:, r0:r1, c0:c1] * component.to(img.dtype), side, top, left)


def _upsampled_argmax(prob: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``argmax`` of the bilinearly upsampled probabilities, computed only where a label other than 0 can occur.

    The upsampled value at a pixel is a convex combination of its 4 nearest coarse pixels, so if class 0 beats
    class k at all four it beats it there too: the full-resolution region of class k lies in the 1-pixel dilation
    of its coarse region. Each class's window is upsampled on its own (``grid_sample`` at the full-resolution pixel
    centres, which reproduces ``interpolate(..., "bilinear", align_corners=False)``), with only the classes that win
    at some coarse pixel of the window (no other class can win in between); the rest is background.
    On a radiograph where the bones cover ~20 % of the image this is several times faster than upsampling every
    channel everywhere, and the memory is that of the largest window.
    """
    c, h, w = prob.shape
    big_h, big_w = size
    coarse = prob.argmax(0)
    out = torch.zeros(size, dtype=torch.uint8, device=prob.device)
    for k in torch.unique(coarse).tolist():
        if k == 0:
            continue
        rows = torch.nonzero((coarse == k).any(1)).flatten()
        cols = torch.nonzero((coarse == k).any(0)).flatten()
        r0, r1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, h)
        c0, c1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, w)
        # full-resolution pixels whose source coordinate (i + 0.5) * h / H - 0.5 lies in [r0 - 1, r1]
        R0, R1 = max(int((r0 - 0.5) * big_h / h) - 1, 0), min(int((r1 + 0.5) * big_h / h) + 2, big_h)
        C0, C1 = max(int((c0 - 0.5) * big_w / w) - 1, 0), min(int((c1 + 0.5) * big_w / w) + 2, big_w)
        gy = (torch.arange(R0, R1, device=prob.device, dtype=prob.dtype) + 0.5) * (2.0 / big_h) - 1.0
        gx = (torch.arange(C0, C1, device=prob.device, dtype=prob.dtype) + 0.5) * (2.0 / big_w) - 1.0
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]
        # only the classes that win somewhere in the coarse window can win between its pixels
        present = torch.unique(coarse[max(r0 - 1, 0):r1 + 1, max(c0 - 1, 0):c1 + 1])
        up = torch.nn.functional.grid_sample(prob[present][None], grid, mode="bilinear", padding_mode="border",
                                             align_corners=False)[0]
        window = out[R0:R1, C0:C1]
        window[present[up.argmax(0)] == k] = k
    return out
