"""Dictionary form of the vertebra ROI extraction (one output dict per vertebra, or the record's level)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from monai_osteo.transforms.vertebra.array import ExtractVertebraROI, VertebraROIError
from monai_osteo.transforms.vertebra.functional import VertebraGeometry, extract_vertebra_roi

__all__ = ["ExtractVertebraROId", "ExtractVertebraROID", "ExtractVertebraROIDict"]


class ExtractVertebraROId(MapTransform):
    """Dictionary wrapper of :class:`ExtractVertebraROI`.

    ``data[keys[0]]`` is the CT (MetaTensor with its affine, e.g. from ``LoadCTd``), ``data[label_key]`` the
    vertebra label map on the same grid. Further ``keys`` (e.g. texture maps on the CT grid) are resampled on
    the same ROI grid. With ``level_key`` present in the data (a per-vertebra datalist record, e.g. the phantom's
    ``"level": "L2"``) the result is one dict for that vertebra; otherwise a list of dicts, one per vertebra
    (as MONAI's multi-sample crops), each with ``level``, ``position`` and ``label_value`` added.

    Args:
        keys: CT key first, then any other volume on the CT grid.
        label_key: key of the vertebra label map (replaced by the body mask under ``mask_key``).
        mask_key: output key of the ROI's body mask.
        level_key: record key naming the vertebra to extract (None: every vertebra).
        roi_size, roi_spacing, body_opening_mm, min_body_mm3, max_tilt_deg, label_names, levels,
        keep_problematic, aligned, pad_value, anti_aliasing: as :class:`ExtractVertebraROI`.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = ExtractVertebraROI.backend

    def __init__(self, keys: KeysCollection, label_key: str = "vertebrae", mask_key: str = "mask",
                 level_key: str | None = "level", roi_size: Sequence[int] | int = 32,
                 roi_spacing: Sequence[float] | float = 1.5, body_opening_mm: float = 5.0,
                 min_body_mm3: float = 1000.0, max_tilt_deg: float = 40.0, label_names: Mapping[int, str] | None = None,
                 levels: Sequence[str | int] | None = None, keep_problematic: bool = False, aligned: bool = True,
                 pad_value: float = -1024.0, anti_aliasing: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_key, self.mask_key, self.level_key = label_key, mask_key, level_key
        self.extractor = ExtractVertebraROI(roi_size, roi_spacing, body_opening_mm, min_body_mm3, max_tilt_deg,
                                            label_names, levels, keep_problematic, aligned, pad_value, anti_aliasing)

    def __call__(self, data: Mapping[Hashable, object]):
        d = dict(data)
        keys = [k for k in self.key_iterator(d)]
        ct_key = keys[0]
        level = d.get(self.level_key) if self.level_key else None
        pairs = self.extractor(d[ct_key], d[self.label_key], level=level)
        single = level is not None
        pairs = [pairs] if single else pairs
        outputs = []
        for roi, mask in pairs:
            out = dict(d)
            out[ct_key], out[self.mask_key] = roi, mask
            if self.label_key != self.mask_key:
                out.pop(self.label_key, None)
            for key in keys[1:]:  # other volumes on the CT grid: the CT ROI's geometry, zero outside
                out[key] = self._same_roi(d[key], d[ct_key], roi, key)
            out["level"] = roi.meta["level"]
            out["position"] = roi.meta["position"]
            out["label_value"] = roi.meta["label_value"]
            outputs.append(out)
        return outputs[0] if single else outputs


    def _same_roi(self, volume, ct, roi: MetaTensor, key) -> MetaTensor:
        """Resample ``volume`` (on the CT's grid) on ``roi``'s grid, reusing its geometry (no second measurement)."""
        data = volume.as_tensor() if isinstance(volume, MetaTensor) else torch.as_tensor(volume)
        data = data if data.ndim == 4 else data[None]
        if tuple(data.shape[1:]) != tuple(ct.shape[-3:]):
            raise VertebraROIError(f"{key!r} has spatial shape {tuple(data.shape[1:])} but the CT has "
                                   f"{tuple(ct.shape[-3:])}; every key must lie on the CT's grid.")
        meta = roi.meta
        geometry = VertebraGeometry(meta["label_value"], np.asarray(meta["centre_mm"]), np.asarray(meta["axes"]),
                                    meta["body_volume_mm3"], np.asarray(meta["extent_mm"]),
                                    "cut by the field of view" in meta["problems"], list(meta["problems"]))
        t = self.extractor
        values, _, _ = extract_vertebra_roi(data, np.asarray(meta["original_affine"]), geometry, t.roi_size,
                                            t.roi_spacing, pad_value=0.0, with_mask=False, aligned=t.aligned,
                                            anti_aliasing=t.anti_aliasing)
        source = str(volume.meta.get("filename_or_obj", "")) if isinstance(volume, MetaTensor) else ""
        return MetaTensor(values.to(data.device), meta={**meta, "skipped": [], "source": source})


ExtractVertebraROID = ExtractVertebraROIDict = ExtractVertebraROId
