"""The inputs and the per-CT preprocessing step of the vertebra_osteo ``inference.json``.

A case is one CT, its vertebra label map and the DXA device the report is made against. :func:`vertebra_inputs`
checks the list of cases before the dataset is built (missing keys or files, unknown device: reported, skipped);
:class:`VertebraCaseGuard` runs the reading and ROI extraction of a case inside the dataset, so that a CT that
cannot be read, a label map off the CT grid or a CT without a usable vertebra becomes one placeholder record
flagged ``failed`` instead of stopping the DataLoader (the report writer lists it and writes no report for it);
:class:`SpineViewsd` keeps small sagittal/coronal views of the CT and its label map for the report, computed once
per CT before the volume is dropped.

Why a guard inside the dataset rather than a check before it (as :func:`~monai_osteo.bundle.images.check_images`
does for radiographs): the failures here show only once the whole CT is read and its label map analysed, so a
check first would read and analyse every CT twice. The placeholder carries the reason through the DataLoader
(worker processes included) and costs one network call on a blank ROI; an empty vertebra list would crash the
default collation and lose the reason.

- [0] Huang et al., TP-SwAV + MoE (``papers/vertebral_ct_tpswav_moe.txt``) §2-3; specs/wave2.md §3.3 (V9: the device
  is an input at inference, a CT-only patient is reported against a reference device).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from scipy import ndimage

from monai_osteo.bundle.paths import output_id, redact

__all__ = ["SpineViewsd", "VertebraCaseGuard", "require_cases", "spine_views", "vertebra_inputs"]

logger = logging.getLogger("monai_osteo.vertebra_osteo")
DOCS = "bundles/vertebra_osteo/docs/README.md"
HINT = ("pass --input_datalist FILE (a JSON list of {\"image\": CT, \"vertebrae\": label map, \"dxa_device\": ...}) "
        "or --ct_file CT --label_file LABEL_MAP [--dxa_device \"GE Lunar\"]")


def vertebra_inputs(input_datalist: str | os.PathLike | Sequence[Mapping] | None = None,
                    ct_file: str | os.PathLike | None = None, label_file: str | os.PathLike | None = None,
                    dxa_device: str | None = None, reference_device: str = "Hologic",
                    device_references: Mapping[str, Mapping] | None = None, keep_names: bool = False) -> dict:
    """The cases of an inference run, checked; the ones that cannot run are reported, the rest kept.

    Args:
        input_datalist: a list of ``{"image": CT (NIfTI/NRRD file or DICOM folder), "vertebrae": label map on the CT
            grid (VerSe labels), "dxa_device": optional}``, or the path of a JSON file holding such a list (or a dict
            with a ``"patients"`` list, as the phantom's ``datalist.json``); relative paths in a file are relative
            to it.
        ct_file, label_file, dxa_device: one more case given on its own.
        reference_device: the device of a case that names none: a patient with a CT and no DXA is reported
            against this device's young-adult reference.
        device_references: the known devices, ``{name: {"index", "ref_mean", "ref_sd"}}``.
        keep_names: name cases after their CT file (unique) and keep the paths; otherwise
            :func:`~monai_osteo.bundle.output_id` (``r<index>_<hash>``) and no path in any output.

    Returns:
        ``{"items": [{"image", "vertebrae", "dxa_device", "dxa_device_given", "device", "case_id", "index"
        (+ "source" with keep_names)}], "failed": [{"id", "error"} (+ "input")]}``.
    """
    refs = dict(device_references or {})
    records, base = _records(input_datalist)
    if ct_file is not None or label_file is not None:
        records.append({"image": ct_file, "vertebrae": label_file, "dxa_device": dxa_device})
    names = _case_names(records, keep_names)
    items, failed = [], []
    for i, (r, name) in enumerate(zip(records, names)):
        r = r if isinstance(r, Mapping) else {}
        image, labels = r.get("image"), r.get("vertebrae")
        paths = [_resolve(p, base) for p in (image, labels) if p]
        device = r.get("dxa_device") or reference_device
        reason = None
        if not image or not labels:
            reason = (f"a case needs 'image' (the CT) and 'vertebrae' (its vertebra label map on the CT grid, VerSe "
                      f"labels), got keys {sorted(r)}; see {DOCS}.")
        elif device not in refs:
            reason = f"dxa_device must be one of {sorted(refs)}, got {device!r}; set it or omit it (reference device)."
        else:
            missing = [p for p in paths if not os.path.exists(p)]
            if missing:
                reason = f"no such file or folder: {', '.join(missing)}; check the paths of the input datalist."
        if reason is not None:
            entry = {"id": name, "error": reason if keep_names else _redact_all(reason, paths)}
            if keep_names and paths:
                entry["input"] = str(paths[0])
            failed.append(entry)
            logger.error("%s: skipped: %s", name, entry["error"])
            continue
        item = {"image": paths[0], "vertebrae": paths[1], "dxa_device": device,
                "dxa_device_given": bool(r.get("dxa_device")), "device": int(refs[device]["index"]),
                "case_id": name, "index": i}
        if keep_names:
            item["source"] = paths[0]
        items.append(item)
    return {"items": items, "failed": failed}


def require_cases(inputs: Mapping) -> Mapping:
    """``inputs`` unless no case was given at all, else ``FileNotFoundError`` saying what to pass."""
    if not inputs["items"] and not inputs["failed"]:
        raise FileNotFoundError(f"no input CT: {HINT}.")
    return inputs


def _records(input_datalist) -> tuple[list, Path | None]:
    if input_datalist is None:
        return [], None
    if isinstance(input_datalist, (str, os.PathLike)):
        path = Path(input_datalist).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"input_datalist {str(path)!r} does not exist: {HINT}.")
        data = json.loads(path.read_text())
        data = data.get("patients", data) if isinstance(data, Mapping) else data
        if not isinstance(data, list):
            raise ValueError(f"input_datalist {str(path)!r} must hold a JSON list of cases (or a dict with a "
                             f"'patients' list), got {type(data).__name__}; see {DOCS}.")
        return [dict(r) if isinstance(r, Mapping) else r for r in data], path.parent
    if isinstance(input_datalist, Mapping):
        raise ValueError(f"input_datalist must be a list of cases or a JSON file path, got a dict; {HINT}.")
    return [dict(r) if isinstance(r, Mapping) else r for r in input_datalist], None


def _resolve(path, base: Path | None) -> str:
    p = Path(str(path)).expanduser()
    return str(base / p if base is not None and not p.is_absolute() else p)


def _case_names(records: list, keep_names: bool) -> list[str]:
    sources = [str(r.get("image", "")) if isinstance(r, Mapping) else "" for r in records]
    if not keep_names:
        return [output_id(s, i) for i, s in enumerate(sources)]
    stems = [_stem(s) or f"case{i:05d}" for i, s in enumerate(sources)]
    repeated = {s for s in stems if stems.count(s) > 1}
    return [f"{s}_{i:05d}" if s in repeated else s for i, s in enumerate(stems)]


def _stem(path: str) -> str:
    name = os.path.basename(os.path.normpath(path)) if path else ""
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _redact_all(message: str, paths: Sequence[str]) -> str:
    for p in sorted(paths, key=len, reverse=True):
        message = redact(message, str(p))
        stem = _stem(str(p))
        message = message.replace(stem, "<input>") if stem else message
    return message


class VertebraCaseGuard(Transform):
    """Run the case-level transforms of one CT (read, views, ROI extraction -> list of vertebra dicts); a case that
    fails becomes one placeholder record, so that the DataLoader goes on with the next CT.

    Each vertebra dict gets ``skipped``: a JSON list of the vertebrae the ROI extraction left out (cut by the field
    of view, too small, no body), read from the ROI's metadata. The placeholder has the case's keys, a blank ROI
    (``pad_value``), ``level`` "", ``position``/``label_value`` 0 and ``failed``: the reason (file paths replaced
    by ``<input>`` unless ``keep_names``). A case whose label map has no usable vertebra fails too.

    Args:
        transform: the case-level transforms (e.g. a ``Compose`` of ``LoadCTd``, :class:`SpineViewsd`,
            ``ExtractVertebraROId(level_key=None)``).
        roi_size: the ROI shape of the placeholder.
        image_key, label_key: keys of the CT and of the label map (paths in the input record).
        keep_names: keep file paths in the failure reason.
        pad_value: the placeholder's value (HU of air, as the ROI's padding).
    """

    def __init__(self, transform: Callable, roi_size: Sequence[int], image_key: str = "image",
                 label_key: str = "vertebrae", keep_names: bool = False, pad_value: float = -1024.0) -> None:
        self.transform, self.roi_size = transform, tuple(int(s) for s in roi_size)
        self.image_key, self.label_key = image_key, label_key
        self.keep_names, self.pad_value = keep_names, float(pad_value)

    def __call__(self, data: Mapping) -> list[dict]:
        try:
            out = self.transform(data)
        except Exception as e:  # noqa: BLE001 - report the bad case, go on with the next CT
            return [self._failure(data, _root_cause(e))]
        out = out if isinstance(out, list) else [out]
        if not out:
            return [self._failure(data, "no usable vertebra: the label map is empty, or every vertebra in it is cut "
                                        "by the field of view, too small or without a body.")]
        for d in out:
            roi = d[self.image_key]
            d["skipped"] = json.dumps(list(roi.meta.get("skipped", [])) if isinstance(roi, MetaTensor) else [])
        return out

    def _failure(self, data: Mapping, reason: str) -> dict:
        paths = [str(data[k]) for k in (self.image_key, self.label_key) if isinstance(data.get(k), (str, Path))]
        reason = reason if self.keep_names else _redact_all(reason, paths)
        logger.error("%s: skipped: %s", data.get("case_id", "case"), reason)
        d = {k: v for k, v in data.items() if k not in (self.image_key, self.label_key)}
        d.update({self.image_key: torch.full((1, *self.roi_size), self.pad_value), "failed": reason, "level": "",
                  "position": 0, "label_value": 0, "skipped": "[]"})
        return d


def _root_cause(e: BaseException) -> str:
    """The reader's or the ROI extraction's own error (it names the problem and the fix), else the innermost."""
    from monai_osteo.data.readers import CTReadError
    from monai_osteo.transforms.vertebra import VertebraROIError

    chain = [e]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    e = next((x for x in chain if isinstance(x, (CTReadError, VertebraROIError))), chain[-1])
    first = (str(e).strip().splitlines() or [""])[0][:500]
    return f"{type(e).__name__}: {first}"


def spine_views(ct: np.ndarray, labels: np.ndarray, spacing: Sequence[float], slab_mm: float = 10.0,
                max_size: int = 256) -> dict[str, np.ndarray | float]:
    """Sagittal and coronal thick-slab views of a CT along its spine, with the label map's values.

    The slab follows the spine: per axial slice its centre is the labels' mean left-right position (sagittal) and
    the 75th percentile of their antero-posterior position (coronal: the vertebral bodies, in front of the arches),
    smoothed over 15 mm and carried to slices without labels. The CT is averaged over ``slab_mm`` (HU), the label
    map max-projected. Views are resampled to square pixels, at most ``max_size`` on a side (never upsampled).

    Args:
        ct: (X, Y, Z) HU, RAS axes (as ``LoadCTd`` gives: +x patient's right, +y anterior, +z superior).
        labels: (X, Y, Z) vertebra label map on the CT grid.
        spacing: voxel size (mm) along X, Y, Z.
        slab_mm: slab thickness.
        max_size: largest side of a view in pixels.

    Returns:
        ``sagittal``, ``coronal`` (H, W) float32 HU and ``sagittal_labels``, ``coronal_labels`` (H, W) int16, rows
        cranial to caudal, columns anterior to posterior (sagittal) and patient's right to left (coronal, as
        radiologists view); ``pixel_mm``: their pixel size.
    """
    sx, sy, sz = (float(s) for s in spacing)
    nx, ny, nz = labels.shape
    step = max(1, max(nx, ny) // 256)  # the slab centres need no full resolution
    fg = labels[::step, ::step] > 0
    per_x, per_y = fg.sum(axis=1), fg.sum(axis=0)  # (X', Z), (Y', Z)
    count = per_x.sum(axis=0)
    has = count > 0
    z = np.arange(nz)
    if has.any():
        x_c = (per_x * np.arange(per_x.shape[0])[:, None]).sum(axis=0) / np.maximum(count, 1) * step
        y_c = np.argmax(np.cumsum(per_y, axis=0) >= 0.75 * count, axis=0) * step
        x_c, y_c = (np.interp(z, z[has], c[has]) for c in (x_c, y_c))
        size = max(1, int(round(15.0 / sz)))
        x_c, y_c = (ndimage.uniform_filter1d(c, size, mode="nearest") for c in (x_c, y_c))
    else:
        x_c, y_c = np.full(nz, nx / 2), np.full(nz, ny / 2)
    hx, hy = max(0, int(round(slab_mm / 2 / sx))), max(0, int(round(slab_mm / 2 / sy)))
    sag, cor = np.empty((ny, nz), np.float32), np.empty((nx, nz), np.float32)
    sag_l, cor_l = np.empty((ny, nz), np.int16), np.empty((nx, nz), np.int16)
    for k in range(nz):
        a, b = int(np.clip(round(x_c[k]) - hx, 0, nx - 1)), int(np.clip(round(x_c[k]) + hx + 1, 1, nx))
        sag[:, k], sag_l[:, k] = ct[a:b, :, k].mean(axis=0), labels[a:b, :, k].max(axis=0)
        a, b = int(np.clip(round(y_c[k]) - hy, 0, ny - 1)), int(np.clip(round(y_c[k]) + hy + 1, 1, ny))
        cor[:, k], cor_l[:, k] = ct[:, a:b, k].mean(axis=1), labels[:, a:b, k].max(axis=1)
    pixel = max(max(ny * sy, nx * sx, nz * sz) / max_size, min(sx, sy, sz))
    out: dict[str, np.ndarray | float] = {"pixel_mm": float(pixel)}
    for name, img, lab, s in (("sagittal", sag, sag_l, sy), ("coronal", cor, cor_l, sx)):
        zoom = (s / pixel, sz / pixel)
        img, lab = ndimage.zoom(img, zoom, order=1), ndimage.zoom(lab, zoom, order=0)
        out[name] = np.ascontiguousarray(img.T[::-1, ::-1], dtype=np.float32)  # rows superior first, cols +y/+x first
        out[f"{name}_labels"] = np.ascontiguousarray(lab.T[::-1, ::-1], dtype=np.int16)
    return out


class SpineViewsd(MapTransform):
    """Add :func:`spine_views` of the CT (``keys[0]``) and its label map (``label_key``) under ``prefix`` keys
    (``view_sagittal``, ``view_coronal``, ``view_sagittal_labels``, ``view_coronal_labels``, ``view_pixel_mm``), so
    that a report can draw the whole spine after the volume is reduced to ROIs (a multi-sample ROI transform copies
    them into every vertebra's dict: ``max_size`` bounds that memory).

    Args:
        keys: the CT key (a MetaTensor (1, X, Y, Z) in RAS, as ``LoadCTd`` gives).
        label_key: the vertebra label map on the CT grid.
        slab_mm, max_size: see :func:`spine_views`.
        prefix: prefix of the added keys.
        pseudonym_key: when given, the CT's and label map's ``filename_or_obj`` are replaced by ``data[pseudonym_key]``
            (the case id), so that later messages (the ROI extraction's warnings) name the case, not the file.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(self, keys: KeysCollection = "image", label_key: str = "vertebrae", slab_mm: float = 10.0,
                 max_size: int = 256, prefix: str = "view_", pseudonym_key: str | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if slab_mm < 0 or max_size < 8:
            raise ValueError(f"slab_mm must be >= 0 and max_size >= 8, got {slab_mm!r}, {max_size!r}.")
        self.label_key, self.slab_mm, self.max_size = label_key, float(slab_mm), int(max_size)
        self.prefix, self.pseudonym_key = prefix, pseudonym_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        key = next(iter(self.key_iterator(d)))
        ct, labels = d[key], d[self.label_key]
        if self.pseudonym_key is not None and self.pseudonym_key in d:
            for v in (ct, labels):
                if isinstance(v, MetaTensor):
                    v.meta["filename_or_obj"] = str(d[self.pseudonym_key])
        affine = ct.affine.cpu().numpy() if isinstance(ct, MetaTensor) else np.eye(4)
        spacing = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
        arr = lambda v: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)  # noqa: E731
        a, lab = arr(ct), arr(labels)
        a, lab = (a[0] if a.ndim == 4 else a), (lab[0] if lab.ndim == 4 else lab)
        views = spine_views(a, lab, spacing, self.slab_mm, self.max_size)
        d.update({f"{self.prefix}{k}": v for k, v in views.items()})
        return d
