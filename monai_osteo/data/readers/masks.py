"""``LoadAnnotatorMasksd``: the M annotator label maps of an image as one (M, H, W) MetaTensor, with weights beta."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from monai_osteo.data.readers.array import LoadRadiograph
from monai_osteo.data.readers.errors import RadiographReadError

__all__ = ["LoadAnnotatorMasksd"]


class LoadAnnotatorMasksd(MapTransform):
    """Load a list of label-map files per key and stack them channel-first, one channel per annotator.

    Args:
        keys: keys whose value is a list of M label-map paths (PNG, NIfTI, DICOM, ... anything
            :class:`~monai_osteo.data.readers.LoadRadiograph` reads); a single path gives M = 1.
        weights_key: key of the annotator weights beta (M numbers summing to 1); written as a float32 tensor,
            filled with 1/M when absent. None leaves weights alone.
        allow_missing_keys: don't raise if a key is missing.

    Output per key: int64 MetaTensor (M, H, W) (meta of the first file plus ``annotator_files``).

    Raises:
        RadiographReadError: a file is unreadable, its values are not integer labels, or the M maps differ in shape.
        ValueError: the weights do not match M or do not sum to 1.
    """

    def __init__(self, keys: KeysCollection, weights_key: str | None = "mask_weights",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.weights_key = weights_key
        self.loader = LoadRadiograph(normalize=False, allow_constant=True)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            paths = [d[key]] if isinstance(d[key], (str, bytes)) or hasattr(d[key], "__fspath__") else list(d[key])
            if not paths:
                raise ValueError(f"{key!r} must list at least one mask file, got an empty list.")
            maps = []
            for p in paths:
                m = self.loader(p)
                arr = np.asarray(m)
                if not np.array_equal(arr, np.round(arr)) or arr.min() < 0:
                    raise RadiographReadError(str(p), "it is not a label map (non-integer or negative values); "
                                                      "save masks as integer labels 0..C-1 (e.g. 8-bit PNG).")
                if maps and m.shape != maps[0].shape:
                    raise RadiographReadError(str(p), f"its shape {tuple(m.shape[1:])} differs from the first mask's "
                                                      f"{tuple(maps[0].shape[1:])}; all annotators must label the "
                                                      "same image grid.")
                maps.append(m)
            stacked = torch.cat([torch.as_tensor(np.asarray(m)) for m in maps], 0).round().long()
            meta = dict(maps[0].meta) if isinstance(maps[0], MetaTensor) else {}
            meta["annotator_files"] = [str(p) for p in paths]
            d[key] = MetaTensor(stacked, meta=meta)
            if self.weights_key is not None:
                d[self.weights_key] = self._weights(d.get(self.weights_key), len(maps), key)
        return d

    def _weights(self, w, m: int, key) -> torch.Tensor:
        if w is None:
            return torch.full((m,), 1.0 / m)
        w = torch.as_tensor(w, dtype=torch.float32).flatten()
        if w.numel() != m or (w < 0).any() or abs(float(w.sum()) - 1.0) > 1e-3:
            raise ValueError(f"{self.weights_key!r} must be {m} non-negative weights summing to 1 (one per mask in "
                             f"{key!r}), got {w.tolist()!r}.")
        return w
