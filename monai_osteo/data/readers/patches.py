"""The bone-patch cache of the hand_osteo workflow: (1, s, s) float16 ``.npy`` files, written atomically."""

from __future__ import annotations

import os

import numpy as np
import torch
from monai.transforms import MapTransform

from monai_osteo.io import atomic_write

__all__ = ["LoadBonePatchd", "save_bone_patch"]


def save_bone_patch(path: str | os.PathLike, patch) -> None:
    """float16 ``.npy`` of a (1, s, s) patch in [0, 1] (float16 keeps 11 bits), written atomically."""
    arr = np.asarray(patch.cpu() if isinstance(patch, torch.Tensor) else patch, dtype=np.float16)
    atomic_write(path, lambda f: np.save(f, arr))


class LoadBonePatchd(MapTransform):
    """Load the cached (1, s, s) patch at ``data[key]`` (a ``.npy`` path) as a float32 tensor in [0, 1]."""

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            arr = np.load(d[key])
            if arr.ndim != 3 or arr.shape[0] != 1:
                raise ValueError(f"{d[key]}: a bone patch must be (1, s, s), got {arr.shape}; rebuild the patch "
                                 "cache (delete its folder and run extract_patches.json again).")
            d[key] = torch.from_numpy(arr.astype(np.float32))
        return d
