"""Header checks and position-ordered stacking of a DICOM series folder (MONAI's reader sorts by InstanceNumber)."""

from __future__ import annotations

import glob
import os
from collections import Counter

import numpy as np
from monai.data import PydicomReader

from monai_osteo.data.readers.errors import CTReadError

__all__ = ["PositionSortedReader", "scan_series", "slice_position"]


def slice_position(ds) -> float:
    """Position (mm) of a DICOM slice along its normal: ImagePositionPatient . (row cosines x column cosines)."""
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    return float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=np.float64), np.cross(iop[:3], iop[3:])))


class PositionSortedReader(PydicomReader):
    """``PydicomReader`` that stacks a series by slice position, not by InstanceNumber.

    MONAI 1.5 sorts a series folder by InstanceNumber and silently drops slices without one; the number is an
    acquisition counter, not a geometric order. Writing the position rank into InstanceNumber (of the in-memory
    datasets only) makes MONAI stack along the slice normal; MONAI then builds the affine from the first and last
    ImagePositionPatient.
    """

    def _combine_dicom_series(self, data, filenames):
        for rank, i in enumerate(np.argsort([slice_position(ds) for ds in data], kind="stable")):
            data[i].InstanceNumber = rank + 1
        return super()._combine_dicom_series(data, filenames)


def scan_series(folder: str) -> dict:
    """Check the headers of a DICOM series folder before its pixels are read.

    Returns the image file names and series facts; raises :class:`CTReadError` for several series, fewer than two
    slices, missing or inconsistent geometry, and a stack whose slices are not evenly spaced (a missing slice).
    """
    import pydicom

    headers, others = [], 0
    for name in sorted(glob.glob(os.path.join(folder, "*"))):  # MONAI's reader globs the same way
        if not os.path.isfile(name):
            continue
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True)
        except Exception:  # not DICOM (notes, thumbnails, ...): left out, as MONAI's reader does
            others += 1
            continue
        if "Rows" in ds:  # an image, not a DICOMDIR or a structured report
            headers.append((name, ds))
        else:
            others += 1
    series = Counter(str(ds.get("SeriesInstanceUID", "")) or "<none>" for _, ds in headers)
    if len(series) > 1:
        listing = ", ".join(f"{uid} ({n} files)" for uid, n in series.most_common())
        raise CTReadError(
            folder,
            f"it holds {len(series)} DICOM series (SeriesInstanceUID: {listing}); pass a folder that holds one "
            "series (sort the files into one folder per SeriesInstanceUID).",
        )
    if len(headers) < 2:
        found = "no DICOM image file" if not headers else "a single DICOM image"
        raise CTReadError(
            folder,
            f"it holds {found} ({others} other files) but a CT volume was expected; pass the folder with every slice "
            "of the series (enhanced multi-frame CT is not supported: convert it to NIfTI, e.g. with dcm2niix).",
        )
    geometry = []
    for name, ds in headers:
        try:
            iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64).reshape(6)
            ipp = np.asarray(ds.ImagePositionPatient, dtype=np.float64).reshape(3)
            ps = np.asarray(ds.PixelSpacing, dtype=np.float64).reshape(2)
        except (AttributeError, TypeError, ValueError):
            iop = ipp = ps = np.full(1, np.nan)
        if not (np.isfinite(iop).all() and np.isfinite(ipp).all() and np.isfinite(ps).all() and (ps > 0).all()):
            raise CTReadError(
                folder,
                f"slice {os.path.basename(name)!r} has no usable ImageOrientationPatient, ImagePositionPatient or "
                "PixelSpacing, so the volume has no voxel spacing; set the voxel spacing in the header (or convert "
                "the series with a tool that can, e.g. dcm2niix).",
            )
        geometry.append((iop, ps, (int(ds.Rows), int(ds.Columns))))
    for (name, _), (iop, ps, size) in zip(headers[1:], geometry[1:]):
        iop0, ps0, size0 = geometry[0]
        if np.abs(iop - iop0).max() > 1e-4 or np.abs(ps - ps0).max() > 1e-3 or size != size0:
            raise CTReadError(
                folder,
                f"slices {os.path.basename(headers[0][0])!r} and {os.path.basename(name)!r} differ in orientation, "
                f"pixel spacing or size ({iop0.round(4).tolist()}, {ps0.tolist()} mm, {size0} vs "
                f"{iop.round(4).tolist()}, {ps.tolist()} mm, {size}); pass a folder holding one uniform stack.",
            )
    positions = np.array([slice_position(ds) for _, ds in headers])
    order = np.argsort(positions, kind="stable")
    names = [os.path.basename(headers[i][0]) for i in order]
    pos = positions[order]
    steps = np.diff(pos)
    step = float(np.median(steps))
    for i, s in enumerate(steps):
        if s < 1e-3:
            raise CTReadError(
                folder,
                f"slices {names[i]!r} and {names[i + 1]!r} lie at the same position ({pos[i]:.3f} mm along the slice "
                "normal): the series repeats slices (several phases or reconstructions); keep one stack per folder.",
            )
        if abs(s - step) > max(1e-2, 1e-2 * step):
            raise CTReadError(
                folder,
                f"its slices are not evenly spaced: a gap of {s:.4g} mm between {names[i]!r} and {names[i + 1]!r} "
                f"(at {pos[i]:.3f} and {pos[i + 1]:.3f} mm along the slice normal) where the other slices are "
                f"{step:.4g} mm apart; a slice is probably missing: re-export the complete series.",
            )
    first = headers[0][1]
    return {
        "files": names,
        "series_uid": str(first.get("SeriesInstanceUID", "")),
        "modality": str(first.get("Modality", "")).strip(),
        "rescaled": any("RescaleIntercept" in ds or "RescaleSlope" in ds for _, ds in headers),
    }
