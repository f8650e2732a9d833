"""``ExtractVertebraROI``: one vertebra-aligned ROI (and body mask) per vertebral body of a CT."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Transform
from monai.utils import TransformBackends

from monai_osteo.data.vertebra_labels import LEVELS, VERSE_LABELS
from monai_osteo.transforms.vertebra.functional import VertebraGeometry, extract_vertebra_roi, vertebra_geometries

__all__ = ["ExtractVertebraROI", "VertebraROIError"]

logger = logging.getLogger(__name__)


class VertebraROIError(ValueError):
    """A requested vertebra is absent from, or unusable in, a CT's label map; the message names the file."""


def _names(label_names: Mapping[int, str] | None) -> dict[int, str]:
    if label_names is None:
        return {v: k for k, v in VERSE_LABELS.items()}
    return {int(k): str(v) for k, v in label_names.items()}


class ExtractVertebraROI(Transform):
    """Resample one ROI per vertebral body, aligned to the body's own axes (the paper's "rotated ROI").

    For each vertebra label of the map: the body is separated from the posterior elements by a morphological
    opening (radius ``body_opening_mm``; pedicles, arch and processes are thinner than its diameter), its
    height axis is the direction near +z along which it is thinnest (PCA cannot tell height from depth when
    they are equal), its width axis the larger in-plane principal axis; the CT is resampled (MONAI
    ``SpatialResample``, trilinear, -1024 HU outside) on a ``roi_size`` grid of ``roi_spacing`` mm centred on
    the body's centroid along those axes, and the body mask alongside (nearest). HU are kept.

    Vertebrae cut by the field of view (the label touches the volume's border), too small, or without a body
    are reported (a warning naming the file and the level, and ``skipped`` in the outputs' metadata) and left
    out unless ``keep_problematic``.

    Metadata of each ROI (``MetaTensor.meta``): ``affine`` = the ROI's voxel-to-world affine (so a saved ROI
    overlays the CT in a viewer), ``level`` ("L2"), ``label_value``, ``position`` (1–18 for T1–L6, 0 otherwise),
    ``centre_mm``, ``axes`` (3x3, columns width/depth/height in world), ``body_volume_mm3``, ``extent_mm``,
    ``problems``, ``source`` (the CT's ``filename_or_obj``).

    Args:
        roi_size: ROI voxels per axis (width, depth, height), e.g. (32, 32, 32).
        roi_spacing: ROI voxel size in mm (isotropic is usual, e.g. 1.5).
        body_opening_mm: radius that removes the posterior elements; 0 if the label map holds bodies only.
        min_body_mm3: smaller bodies are reported as too small.
        max_tilt_deg: largest tilt of a body from the volume's +z axis that is searched.
        label_names: ``{label value: level name}``; default VerSe (T1-T12 = 8-19, L1-L6 = 20-25).
        levels: level names or label values to extract (default: every vertebra in the map).
        keep_problematic: also return ROIs of cut / small vertebrae (flagged in ``problems``).
        aligned: False resamples an axis-aligned ROI (patient axes) centred on the body.
        pad_value: value outside the CT (HU of air).
        anti_aliasing: smooth the CT where the ROI is coarser than it before sampling (see
            :func:`~monai_osteo.transforms.vertebra.functional.extract_vertebra_roi`).

    Example::

        rois = ExtractVertebraROI((32, 32, 32), 1.5)(ct, label_map)  # list of (roi, mask) MetaTensors
        rois[0][0].meta["level"]  # "T10"
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, roi_size: Sequence[int] | int = 32, roi_spacing: Sequence[float] | float = 1.5,
                 body_opening_mm: float = 5.0, min_body_mm3: float = 1000.0, max_tilt_deg: float = 40.0,
                 label_names: Mapping[int, str] | None = None, levels: Sequence[str | int] | None = None,
                 keep_problematic: bool = False, aligned: bool = True, pad_value: float = -1024.0,
                 anti_aliasing: bool = True) -> None:
        self.roi_size = tuple(int(s) for s in np.broadcast_to(roi_size, (3,)))
        self.roi_spacing = tuple(float(s) for s in np.broadcast_to(roi_spacing, (3,)))
        if min(self.roi_size) < 1 or min(self.roi_spacing) <= 0:
            raise ValueError(f"roi_size must be >= 1 and roi_spacing > 0, got {roi_size!r}, {roi_spacing!r}.")
        if body_opening_mm < 0 or not 0 < max_tilt_deg <= 60:
            raise ValueError(f"body_opening_mm must be >= 0 and max_tilt_deg in (0, 60], got {body_opening_mm!r}, "
                             f"{max_tilt_deg!r}.")
        self.body_opening_mm = float(body_opening_mm)
        self.min_body_mm3 = float(min_body_mm3)
        self.max_tilt_deg = float(max_tilt_deg)
        self.names = _names(label_names)
        self.values = {n: v for v, n in self.names.items()}
        self.levels = None if levels is None else [self._value(x) for x in levels]
        self.keep_problematic = keep_problematic
        self.aligned = aligned
        self.pad_value = float(pad_value)
        self.anti_aliasing = anti_aliasing

    def _value(self, level: str | int) -> int:
        if isinstance(level, str) and not level.lstrip("-").isdigit():
            if level not in self.values:
                raise ValueError(f"level {level!r} is not in the label convention; known: {sorted(self.values)}.")
            return self.values[level]
        return int(level)

    def __call__(self, img: torch.Tensor | np.ndarray, label_map: torch.Tensor | np.ndarray,
                 affine: np.ndarray | None = None, level: str | int | None = None):
        """Extract the ROIs.

        Args:
            img: CT (C, X, Y, Z) or (X, Y, Z); a MetaTensor carries its affine.
            label_map: vertebra label map (1, X, Y, Z) or (X, Y, Z) on the same grid.
            affine: the voxel-to-world affine when ``img`` is not a MetaTensor.
            level: extract only this vertebra (a name or label value) and return one pair; raises
                :class:`VertebraROIError` if it is absent or unusable (unless ``keep_problematic``).

        Returns:
            a list of ``(roi, mask)`` pairs, roi (C, *roi_size) float32 and mask (1, *roi_size) uint8 MetaTensors,
            cranial to caudal by label value; or one pair when ``level`` is given.
        """
        source = str(img.meta.get("filename_or_obj", "")) if isinstance(img, MetaTensor) else ""
        if affine is None:
            if not isinstance(img, MetaTensor):
                raise ValueError("img must be a MetaTensor (with an affine) or affine must be given.")
            affine = img.affine
        affine = np.asarray(torch.as_tensor(affine, dtype=torch.float64).cpu().numpy())
        lab = label_map.detach().cpu().numpy() if isinstance(label_map, torch.Tensor) else np.asarray(label_map)
        lab = lab[0] if lab.ndim == 4 else lab
        vol = img if img.ndim == 4 else img[None]
        if tuple(lab.shape) != tuple(vol.shape[1:]):
            raise VertebraROIError(f"{source or 'the CT'}: the label map's shape {tuple(lab.shape)} differs from the "
                                   f"CT's {tuple(vol.shape[1:])}; resample the label map onto the CT grid "
                                   "(monai.transforms.ResampleToMatch(mode='nearest')).")
        if lab.dtype.kind == "f" and np.any(np.mod(lab, 1) != 0):
            raise VertebraROIError(f"{source or 'the label map'}: the label map holds non-integer values; it was "
                                   "probably resampled with linear interpolation, resample it with mode='nearest'.")
        wanted = [self._value(level)] if level is not None else self.levels
        if lab.dtype.kind not in "iu":  # float label maps (LoadCTd): the smallest integer type that holds them
            lab = lab.astype(np.uint8 if lab.min() >= 0 and lab.max() < 256 else np.int32)
        geos = vertebra_geometries(lab, affine, wanted, self.body_opening_mm, self.min_body_mm3,
                                   self.max_tilt_deg)
        if level is not None:
            name = self.names.get(wanted[0], str(wanted[0]))
            if not geos:
                raise VertebraROIError(f"{source or 'the CT'}: vertebra {name} (label {wanted[0]}) is not in its label "
                                       "map; check the level or the label convention (label_names).")
            if geos[0].problems and not self.keep_problematic:
                raise VertebraROIError(f"{source or 'the CT'}: vertebra {name} is unusable: "
                                       f"{'; '.join(geos[0].problems)}; pass keep_problematic=True to keep it.")
            return self._roi(vol, affine, geos[0], source, [])
        skipped = [f"{self.names.get(g.label, g.label)}: {'; '.join(g.problems)}" for g in geos if g.problems]
        if skipped and not self.keep_problematic:
            logger.warning("%s: skipped vertebrae %s", source or "CT", ", ".join(skipped))
        return [self._roi(vol, affine, g, source, skipped) for g in geos if self.keep_problematic or not g.problems]

    def _roi(self, vol, affine: np.ndarray, geo: VertebraGeometry, source: str, skipped: list[str]):
        data = vol.as_tensor() if isinstance(vol, MetaTensor) else torch.as_tensor(vol)
        roi, mask, dst = extract_vertebra_roi(data, affine, geo, self.roi_size, self.roi_spacing,
                                              pad_value=self.pad_value, aligned=self.aligned,
                                              anti_aliasing=self.anti_aliasing)
        name = self.names.get(geo.label, str(geo.label))
        meta = {"affine": torch.as_tensor(dst), "original_affine": torch.as_tensor(affine), "level": name,
                "label_value": int(geo.label), "position": LEVELS.index(name) + 1 if name in LEVELS else 0,
                "centre_mm": geo.centre.tolist(), "axes": geo.axes.tolist(),
                "body_volume_mm3": geo.body_volume_mm3, "extent_mm": geo.extent_mm.tolist(),
                "problems": list(geo.problems), "skipped": list(skipped), "source": source,
                "spacing": np.asarray(self.roi_spacing)}
        return (MetaTensor(roi.to(data.device), meta=dict(meta)),
                MetaTensor(mask, meta=dict(meta)))
