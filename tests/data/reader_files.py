"""Files for the reader tests: a DICOM writer, test images and the DICOM VOI formula."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor
from pydicom.dataset import Dataset as DicomDataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 12, **tags) -> Path:
    """Write a CR DICOM file; ``pixels`` is (rows, cols) or (rows, cols, 3); extra ``tags`` by keyword."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = DicomDataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CR_SOP_CLASS, meta.MediaStorageSOPInstanceUID, "CR"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    signed = pixels.min() < 0
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
    dtype = {8: np.uint8, 16: np.uint16}[ds.BitsAllocated] if not signed else np.int16
    ds.PixelData = np.ascontiguousarray(pixels.astype(dtype)).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def minmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x - x.min()) / (x.max() - x.min())


def dicom_linear_window(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR VOI function, written as in the standard (if / else if / else)."""
    x = np.asarray(x, dtype=np.float64)
    out = ((x - (c - 0.5)) / (w - 1) + 0.5) * 1.0
    out[x <= c - 0.5 - (w - 1) / 2] = 0.0
    out[x > c - 0.5 + (w - 1) / 2] = 1.0
    return out


def asym(rows: int = 6, cols: int = 9, high: int = 4000) -> np.ndarray:
    """Asymmetric test image: ramp plus a bright pixel at row 0, column 5."""
    a = (np.arange(rows * cols).reshape(rows, cols) * 7 % 200 + 20).astype(np.uint16)
    a[0, 5] = high
    return a


def check_output(img, shape) -> None:
    assert isinstance(img, MetaTensor)
    assert tuple(img.shape) == tuple(shape)
    assert img.dtype == torch.float32
    assert float(img.min()) == 0.0 and float(img.max()) == 1.0


def pydicom_data(name: str) -> str:
    pytest.importorskip("data_store", reason="pydicom-data (test extra) is not installed")
    return pydicom.data.get_testdata_file(name)
