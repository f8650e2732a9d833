"""Bone patches: one Hadamard-masked, square, native-scale patch per target bone of a hand radiograph.

- [0] Multi-crop data augmentation (first paragraph), hand X-ray osteoporosis screening journal paper
  (``papers/hand_xray_osteoporosis_journal.txt``): "targeted bone image segments using a simple Hadamard
  multiplication ... 7 unique image patches ... corresponding to the ulna, radius, and the five
  metacarpals ... instances of deviation resulting in fewer than seven target image segments".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import Resize, Transform
from monai.transforms.traits import MultiSampleTrait
from monai.transforms.utils import create_translate
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from monai_osteo.data.labels import BONE_LABELS
from monai_osteo.transforms.bone.functional import (
    hadamard_patch,
    largest_component_per_label,
    mask_to_labels,
    place_in_window,
    resolve_min_area,
    square_window,
)

__all__ = ["BoneRecord", "ExtractBonePatches", "BONE_META_KEYS"]

logger = logging.getLogger(__name__)

#: metadata written on every patch (MetaTensor ``meta`` and dictionary keys)
BONE_META_KEYS = ("bone", "bone_label", "bbox", "crop_box", "area", "bones_not_found", "source")


@dataclass
class BoneRecord:
    """One bone found in a radiograph (full-resolution pixel coordinates, half-open boxes).

    Attributes:
        name: bone name, e.g. ``"M2"``.
        value: its label value.
        bbox: (r0, c0, r1, c1) of its largest connected component.
        area: pixel count of that component.
        component: (r1 - r0, c1 - c0) bool mask of the component inside ``bbox``.
        side, top, left: square window (see :func:`~monai_osteo.transforms.bone.functional.square_window`).
    """

    name: str
    value: int
    bbox: tuple[int, int, int, int]
    area: int
    component: np.ndarray
    side: int
    top: int
    left: int

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        """(r0, c0, r1, c1) of the square patch window in the original image (may reach outside it)."""
        r0, c0 = self.bbox[0] - self.top, self.bbox[1] - self.left
        return r0, c0, r0 + self.side, c0 + self.side

    def meta(self, not_found: list[str], source: str) -> dict:
        """The patch metadata (:data:`BONE_META_KEYS`); ``bones_not_found`` is comma-joined so batches collate."""
        return {"bone": self.name, "bone_label": self.value, "bbox": self.bbox, "crop_box": self.crop_box,
                "area": self.area, "bones_not_found": ",".join(not_found), "source": source}


def source_of(*arrays) -> str:
    """``filename_or_obj`` of the first MetaTensor among ``arrays`` that has one, else ``""``."""
    for a in arrays:
        name = a.meta.get("filename_or_obj") if isinstance(a, MetaTensor) else None
        if name:
            return str(name)
    return ""


class ExtractBonePatches(Transform, MultiSampleTrait):
    """Split a hand radiograph into one patch per target bone: image ⊙ mask, bbox + margin, square, native scale.

    For every bone of ``bone_labels`` (default ulna, radius, M1-M5 = 1..7) the mask is brought to the
    image's resolution, reduced to its largest 8-connected component, and the patch is the Hadamard product
    of the image with that component, cropped to the component's bounding box plus ``margin`` and padded
    with zeros to a centred square, at native pixel scale (texture is the signal). Bones absent or whose
    largest component is smaller than ``min_area`` are not patched (never invented) and are listed in
    every patch's ``bones_not_found``. The output is a list, ordered by label value, as MONAI's multi-sample
    crops return: in a ``Compose`` the following transforms run on each patch, and
    ``monai.data.list_data_collate`` flattens the lists of a batch (equal sizes need ``spatial_size``; see
    :func:`~monai_osteo.transforms.bone.dictionary.collate_bone_patches` for native-size patches).

    With MetaTensor output (``monai.data.set_track_meta(True)``, the default, for tensor inputs) each patch
    carries the image's metadata with an affine translated (and scaled, with ``spatial_size``) to the patch
    grid, plus :data:`BONE_META_KEYS`: ``bone`` (name), ``bone_label``, ``bbox`` (r0, c0, r1, c1) of the
    component and ``crop_box`` of the square window, both half-open in full-resolution pixels of the input
    image, ``area`` (pixels), ``bones_not_found`` (comma-joined names, ``""`` if all found) and ``source``
    (the input's ``filename_or_obj`` or ``""``). NumPy inputs give NumPy patches without metadata; use
    :meth:`find_bones` or the dictionary transform for it.

    Connected components run on CPU (``scipy.ndimage``) on the uint8 label map; upsampling,
    argmax, masking and cropping stay on the inputs' device.

    Args:
        margin: added on every side of the bbox before squaring: pixels if >= 1, else a fraction of the bbox's
            longer side (default 5%, keeps the cortical edge off the patch border).
        min_area: smallest largest-component area kept, in full-resolution pixels if >= 1, else a fraction of
            the image area. The default 0.05% is about 1/18 of the smallest target bone (M1 or M5 cover
            ~0.9% of a PA hand radiograph, phantom and real alike): it drops segmentation specks and
            fragments yet keeps a bone half hidden by a ring or splint.
        spatial_size: optional side length: resize every patch to (s, s) with MONAI ``Resize`` (``mode`` for
            the image, nearest for the mask); ``None`` (default) keeps native pixel scale.
        mode: interpolation of the image when ``spatial_size`` is set: ``"area"`` (default, for downsampling)
            or any MONAI ``Resize`` mode, e.g. ``"bilinear"``.
        threshold: probabilities only; see :func:`~monai_osteo.transforms.bone.functional.mask_to_labels`.
        return_mask: also return each patch's (1, s, s) bool mask of its bone: items become ``(patch, mask)``.
        allow_empty: when no bone is found, return ``[]`` and log a warning (True, default) or raise a
            ``ValueError`` naming the file (False).
        bone_labels: ``{name: value}`` of the bones to extract (values 1..255); default
            :data:`monai_osteo.data.phantoms.BONE_LABELS`.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, margin: float = 0.05, min_area: float = 5e-4, spatial_size: int | None = None,
                 mode: str = "area", threshold: float | None = None, return_mask: bool = False,
                 allow_empty: bool = True, bone_labels: dict[str, int] | None = None) -> None:
        if margin < 0:
            raise ValueError(f"margin must be >= 0 (pixels if >= 1, else a fraction of the bbox side), "
                             f"got {margin!r}.")
        if min_area < 0:
            raise ValueError(f"min_area must be >= 0 (pixels if >= 1, else a fraction of the image area), "
                             f"got {min_area!r}.")
        if spatial_size is not None and (not isinstance(spatial_size, int) or spatial_size < 1):
            raise ValueError(f"spatial_size must be a positive int or None (native scale), got {spatial_size!r}.")
        bone_labels = dict(BONE_LABELS if bone_labels is None else bone_labels)
        values = list(bone_labels.values())
        if not values or len(set(values)) != len(values) or not all(isinstance(v, int) and 1 <= v <= 255
                                                                    for v in values):
            raise ValueError(f"bone_labels must map names to distinct ints in 1..255, got {bone_labels!r}.")
        self.margin = margin
        self.min_area = min_area
        self.spatial_size = spatial_size
        self.mode = mode
        self.threshold = threshold
        self.return_mask = return_mask
        self.allow_empty = allow_empty
        self.bone_labels = dict(sorted(bone_labels.items(), key=lambda kv: kv[1]))
        if spatial_size is not None:
            self._resize_img = Resize((spatial_size, spatial_size), mode=mode)
            self._resize_mask = Resize((spatial_size, spatial_size), mode="nearest")

    def find_bones(self, label: NdarrayOrTensor, spatial_size: tuple[int, int],
                   source: str = "") -> tuple[list[BoneRecord], list[str]]:
        """Locate the bones in ``label`` at full resolution.

        Args:
            label: (1, h, w) label map or (C, h, w) class probabilities (channel 0 = background, C greater than
                every bone label), at the image's or a reduced resolution with the same aspect ratio.
            spatial_size: (H, W) of the full-resolution image.
            source: file name used in messages.

        Returns:
            The bones found (label order) and the names of those not found.

        Raises:
            ValueError: wrong shapes, or no bone found with ``allow_empty=False``.
        """
        lab_t = convert_to_tensor(label.as_tensor() if isinstance(label, MetaTensor) else label, track_meta=False)
        if lab_t.ndim != 3:
            raise ValueError(f"label must be channel-first (1, H, W) labels or (C, H, W) probabilities, "
                             f"got shape {tuple(lab_t.shape)}; add a channel with EnsureChannelFirst.")
        top = max(self.bone_labels.values())
        if lab_t.shape[0] > 1 and lab_t.shape[0] <= top:
            raise ValueError(f"label must have 1 channel (label map) or more than {top} (probabilities with "
                             f"background in channel 0), got {lab_t.shape[0]} channels.")
        labels = mask_to_labels(lab_t, spatial_size, self.threshold).cpu().numpy()
        found = largest_component_per_label(labels, list(self.bone_labels.values()))
        min_px = resolve_min_area(self.min_area, int(spatial_size[0]) * int(spatial_size[1]))
        bones, missing = [], []
        for name, v in self.bone_labels.items():
            if v not in found or found[v][2] < min_px:
                missing.append(name)
                if v in found:
                    logger.debug("%s: %s dropped, largest component %d px < min_area %.0f px",
                                 source or "image", name, found[v][2], min_px)
                continue
            comp, bbox, area = found[v]
            bones.append(BoneRecord(name, v, bbox, area, comp, *square_window(bbox, self.margin)))
        if not bones:
            msg = (f"no bone of {list(self.bone_labels)} found in {source or 'the image'!s} with a largest "
                   f"component >= {min_px:.0f} px")
            if not self.allow_empty:
                raise ValueError(f"label must contain at least one bone, got none: {msg}. Check the segmentation "
                                 "or lower min_area; allow_empty=True returns [] instead.")
            logger.warning("%s; returning no patch.", msg)
        return bones, missing

    def _affine(self, img: MetaTensor, bone: BoneRecord) -> torch.Tensor:
        affine = img.affine
        rank = max(len(affine) - 1, 2)
        shift = [bone.crop_box[0], bone.crop_box[1]] + [0] * (rank - 2)
        mat = convert_to_dst_type(create_translate(rank, shift), affine)[0]
        return affine @ mat

    def make_patches(self, img: NdarrayOrTensor, bones: list[BoneRecord], not_found: list[str],
                     source: str = "", masks: bool | None = None) -> tuple[list, list]:
        """Cut the patches of ``bones`` from ``img`` (one image; the dictionary transform calls it per key).

        Args:
            img: (C, H, W) full-resolution image, NumPy or torch, any device.
            bones, not_found: from :meth:`find_bones`.
            source: file name for the metadata.
            masks: also return the masks; ``None`` follows ``return_mask``.

        Returns:
            ``(patches, masks)``: lists of (C, s, s) patches in ``img``'s type, dtype and device, and of (1, s, s)
            bool masks (empty list unless ``masks``).
        """
        img_t = convert_to_tensor(img.as_tensor() if isinstance(img, MetaTensor) else img, track_meta=False)
        meta_out = isinstance(img, MetaTensor) and get_track_meta()
        with_masks = self.return_mask if masks is None else masks
        patches, mask_list = [], []
        for bone in bones:
            comp = torch.from_numpy(bone.component).to(img_t.device)
            patch = hadamard_patch(img_t, comp, bone.bbox, bone.side, bone.top, bone.left)
            mask = None
            if with_masks or self.spatial_size is not None:
                mask = place_in_window(comp[None], bone.side, bone.top, bone.left)
            if meta_out:
                meta = {**img.meta, **bone.meta(not_found, source), "affine": self._affine(img, bone)}
                patch = MetaTensor(patch, meta=meta)
                mask = None if mask is None else MetaTensor(mask, meta=dict(meta))
            if self.spatial_size is not None:
                patch, mask = self._resize(patch, mask, img_t.dtype)
            patches.append(self._caller_type(patch, img, meta_out))
            if with_masks:
                mask_list.append(self._caller_type(mask, img, meta_out, dtype=bool))
        return patches, mask_list

    @staticmethod
    def _caller_type(x: torch.Tensor, img: NdarrayOrTensor, meta_out: bool, dtype=None) -> NdarrayOrTensor:
        if meta_out:
            return x
        if isinstance(img, torch.Tensor):  # a plain tensor, also for a MetaTensor input with track_meta off
            return convert_to_tensor(x, track_meta=False)
        return convert_to_dst_type(x, img, dtype=dtype)[0]

    def _resize(self, patch: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype) -> tuple:
        out = self._resize_img(patch.float())
        keep = self._resize_mask(mask.float()) > 0.5
        # MONAI Resize computes in float32; give the patch back the image's dtype (integers rounded)
        out = out.round().clamp(*_bounds(dtype)) if not dtype.is_floating_point else out
        return out.to(dtype), keep

    def __call__(self, img: NdarrayOrTensor, label: NdarrayOrTensor) -> list:  # type: ignore[override]
        """Extract the bone patches of one radiograph.

        Args:
            img: (C, H, W) radiograph (C = 1 usually), NumPy or torch (MetaTensor for metadata), CPU or CUDA.
            label: (1, H', W') label map (0 background, values of ``bone_labels``) or (C', H', W')
                per-class probabilities, at (H, W) or a reduced resolution with the same aspect ratio.

        Returns:
            List of (C, s, s) patches, one per bone found, in label order (``(patch, mask)`` pairs with
            ``return_mask``); empty when no bone is found (see ``allow_empty``).
        """
        if np.ndim(img) != 3:
            raise ValueError(f"img must be channel-first (C, H, W), got shape {tuple(np.shape(img))}; add a "
                             "channel with EnsureChannelFirst.")
        source = source_of(img, label)
        bones, not_found = self.find_bones(label, tuple(img.shape[1:]), source)
        patches, masks = self.make_patches(img, bones, not_found, source)
        return list(zip(patches, masks)) if self.return_mask else patches


def _bounds(dtype: torch.dtype) -> tuple[float, float]:
    info = torch.iinfo(dtype) if dtype != torch.bool else None
    return (0.0, 1.0) if info is None else (float(info.min), float(info.max))
