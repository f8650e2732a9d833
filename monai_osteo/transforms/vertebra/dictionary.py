"""Dictionary form of the vertebra ROI extraction (one output dict per vertebra, or the record's level)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_osteo.transforms.vertebra.array import ExtractVertebraROI

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
        self.others = ExtractVertebraROI(roi_size, roi_spacing, body_opening_mm, min_body_mm3, max_tilt_deg,
                                         label_names, levels, True, aligned, 0.0, anti_aliasing)

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
            for key in keys[1:]:  # other volumes on the CT grid: same ROI, zero outside
                out[key] = self.others(d[key], d[self.label_key], affine=roi.meta["original_affine"],
                                       level=roi.meta["label_value"])[0]
            out["level"] = roi.meta["level"]
            out["position"] = roi.meta["position"]
            out["label_value"] = roi.meta["label_value"]
            outputs.append(out)
        return outputs[0] if single else outputs


ExtractVertebraROID = ExtractVertebraROIDict = ExtractVertebraROId
