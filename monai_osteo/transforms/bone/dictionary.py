"""Dictionary twin of :class:`~monai_osteo.transforms.bone.array.ExtractBonePatches` and a collate for its output.

- [0] Multi-crop data augmentation (first paragraph), hand X-ray osteoporosis screening journal paper
  (``papers/hand_xray_osteoporosis_journal.txt``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from copy import deepcopy

import numpy as np
from monai.config import KeysCollection
from monai.data.utils import pad_list_data_collate
from monai.transforms import MapTransform
from monai.transforms.traits import MultiSampleTrait

from monai_osteo.transforms.bone.array import ExtractBonePatches, source_of

__all__ = ["ExtractBonePatchesd", "ExtractBonePatchesD", "ExtractBonePatchesDict", "collate_bone_patches"]


class ExtractBonePatchesd(MapTransform, MultiSampleTrait):
    """Dictionary-based :class:`~monai_osteo.transforms.bone.array.ExtractBonePatches`: one dict per bone found.

    The bones are located once in ``data[label_key]`` and every image of ``keys`` (same spatial size, e.g. a
    radiograph and a denoised copy) is cut with the same masks. Each output dict is a copy of the input
    (other keys deep-copied, as MONAI's ``RandCropByPosNegLabeld`` does) where the ``keys`` hold the patches,
    ``label_key`` is removed (the full-resolution map would be copied into every patch; set
    ``mask_key=label_key`` to replace it by the patch's own mask) and these keys are added:

    - ``bone`` (str), ``bone_label`` (int), ``area`` (int, pixels), ``source`` (str, the image's
      ``filename_or_obj`` from its MetaTensor or ``{key}_meta_dict``, else ``""``);
    - ``bbox`` and ``crop_box``: int64 arrays (r0, c0, r1, c1), half-open, full-resolution pixels of the input
      (the bone's component and the square window), so a batch collates them to (B, 4);
    - ``bones_not_found``: comma-joined names of the bones not found (``""`` if none), a string so that
      batches with different numbers of missing bones still collate;
    - ``mask_key`` (optional): the patch's (1, s, s) bool mask of its bone.

    Existing keys of those names are overwritten. MetaTensor patches also carry them in ``.meta``.

    In a ``monai.data.Dataset`` an item becomes a list of up to 7 dicts; a radiograph without any bone gives
    ``[]`` and a logged warning (or a ``ValueError`` naming the file with ``allow_empty=False``).
    ``monai.data.list_data_collate`` (the ``DataLoader`` default in MONAI) flattens the lists of a batch and
    stacks the patches, which needs equal sizes (``spatial_size``) and at least one patch per batch; for
    native-scale patches use :func:`collate_bone_patches`.

    Args:
        keys: keys of the (C, H, W) images to patch.
        label_key: key of the (1, H', W') label map or (C', H', W') probabilities (see ``ExtractBonePatches``).
        mask_key: where to store each patch's bool mask; ``None`` (default) stores none.
        margin, min_area, spatial_size, mode, threshold, allow_empty, bone_labels: see
            :class:`~monai_osteo.transforms.bone.array.ExtractBonePatches`.
        allow_missing_keys: skip absent ``keys`` (at least one must be present).
    """

    backend = ExtractBonePatches.backend

    def __init__(self, keys: KeysCollection, label_key: str, mask_key: str | None = None, margin: float = 0.05,
                 min_area: float = 5e-4, spatial_size: int | None = None, mode: str = "area",
                 threshold: float | None = None, allow_empty: bool = True, bone_labels: dict[str, int] | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if label_key in self.keys:
            raise ValueError(f"label_key must not be one of keys (the images to patch), got {label_key!r}.")
        self.label_key = label_key
        self.mask_key = mask_key
        self.extractor = ExtractBonePatches(margin=margin, min_area=min_area, spatial_size=spatial_size, mode=mode,
                                            threshold=threshold, return_mask=mask_key is not None,
                                            allow_empty=allow_empty, bone_labels=bone_labels)

    def __call__(self, data: Mapping[Hashable, object]) -> list[dict[Hashable, object]]:
        """Return one dict per bone found in ``data[label_key]`` (label order), ``[]`` if none."""
        d = dict(data)
        if self.label_key not in d:
            raise ValueError(f"label_key must name an entry of the data, got {self.label_key!r} not in {list(d)}.")
        label = d.pop(self.label_key)
        keys = list(self.key_iterator(d))
        if not keys:
            raise ValueError(f"keys must name at least one image of the data, got {list(self.keys)} not in {list(d)}.")
        sizes = {k: tuple(np.shape(d[k])) for k in keys}
        size = sizes[keys[0]]
        if len(size) != 3 or any(s[1:] != size[1:] for s in sizes.values()):
            raise ValueError(f"keys must hold channel-first (C, H, W) images of one spatial size, got {sizes}; add a "
                             "channel with EnsureChannelFirstd or resample them to one grid.")
        meta_dict = d.get(f"{keys[0]}_meta_dict")
        source = source_of(d[keys[0]], label) or str((meta_dict or {}).get("filename_or_obj") or "")
        bones, not_found = self.extractor.find_bones(label, size[1:], source)
        ret: list[dict] = [dict(d) for _ in bones]
        for out in ret:
            for key in set(d).difference(keys):
                out[key] = deepcopy(d[key])
        for j, key in enumerate(keys):
            patches, masks = self.extractor.make_patches(d[key], bones, not_found, source, masks=j == 0)
            for i, patch in enumerate(patches):
                ret[i][key] = patch
                if j == 0 and self.mask_key is not None:
                    ret[i][self.mask_key] = masks[i]
        for out, bone in zip(ret, bones):
            info = bone.meta(not_found, source)
            info["bbox"] = np.asarray(info["bbox"], dtype=np.int64)
            info["crop_box"] = np.asarray(info["crop_box"], dtype=np.int64)
            out.update(info)
        return ret


def collate_bone_patches(batch: Sequence, pad: bool = False):
    """Collate for the lists that ``ExtractBonePatches(d)`` returns per radiograph, native patch sizes included.

    Args:
        batch: one list of patches (dicts, arrays or ``(patch, mask)`` pairs) per radiograph; single items
            are taken as lists of one.
        pad: ``False`` (default) returns the flat list of patches unstacked, one entry per bone, ready for a
            per-patch step such as the constrained multi-crop that follows in the hand pipeline. ``True`` stacks
            them with MONAI's ``pad_list_data_collate``, zero-padding every patch to the largest of the batch
            (fine with ``spatial_size`` or similar sizes; a batch without any patch then raises).

    Returns:
        A flat list of patches, or a collated batch with ``pad=True``.

    Example::

        loader = DataLoader(Dataset(datalist, transform), batch_size=4, collate_fn=collate_bone_patches)
    """
    flat = [p for item in batch for p in (item if isinstance(item, list) else [item])]
    if not pad:
        return flat
    if not flat:
        raise ValueError("batch must contain at least one bone patch to be stacked, got none; use pad=False (a "
                         "flat, possibly empty list) or allow_empty=False to find the radiographs without bones.")
    return pad_list_data_collate(flat)


ExtractBonePatchesD = ExtractBonePatchesDict = ExtractBonePatchesd
