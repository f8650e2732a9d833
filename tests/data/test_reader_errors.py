"""Every bad radiograph raises RadiographReadError naming the file and the problem."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from monai_osteo.data.readers import LoadRadiograph, RadiographReadError
from tests.data.reader_files import asym, write_dicom


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncate(path: Path, keep: float = 0.5) -> Path:
    return _write(path, path.read_bytes()[: int(path.stat().st_size * keep)])


def _nifti(path: Path, arr: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(arr.astype(np.float32), np.eye(4)), path)
    return path


def _png(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


def _multiframe_dicom(path: Path) -> Path:
    frames = np.stack([asym(4, 6), asym(4, 6)[::-1]])
    write_dicom(path, frames[0])
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = frames.shape[0]
    ds.PixelData = frames.astype(np.uint16).tobytes()
    ds.save_as(path)
    return path


def _multipage_tiff(path: Path) -> Path:
    pages = [Image.fromarray(asym().astype(np.uint8)), Image.fromarray(asym().astype(np.uint8)[::-1].copy())]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


# case: (file factory, LoadRadiograph kwargs, text the message must contain after the file name)
ERROR_CASES = {
    "missing": (lambda p: p / "missing.png", {}, "does not exist"),
    "directory": (lambda p: _directory(p / "series.dcm"), {}, "directory"),
    "empty": (lambda p: _write(p / "empty.dcm", b""), {}, "empty (0 bytes)"),
    "truncated_dicom": (lambda p: _truncate(write_dicom(p / "trunc.dcm", asym())), {}, "truncated"),
    "garbage_dicom": (lambda p: _write(p / "junk.dcm", b"not a dicom" * 50), {}, "corrupt"),
    "truncated_png": (lambda p: _truncate(_png(p / "trunc.png", asym(40, 60).astype(np.uint8))), {}, "truncated"),
    "garbage_png": (lambda p: _write(p / "junk.png", b"\x89PNG garbage" * 20), {}, "PILReader could not decode"),
    "unsupported": (lambda p: _write(p / "notes.txt", b"hello"), {}, "unsupported file type"),
    "volume_as_2d": (lambda p: _nifti(p / "vol.nii.gz", np.random.rand(4, 5, 6)), {}, "pass spatial_dims=3"),
    "image_as_3d": (lambda p: _nifti(p / "img.nii.gz", np.random.rand(4, 5)), {"spatial_dims": 3}, "spatial_dims=2"),
    "dicom_as_3d": (lambda p: write_dicom(p / "img3d.dcm", asym()), {"spatial_dims": 3}, "convert the series"),
    "nan": (lambda p: _nifti(p / "nan.nii.gz", np.where(np.eye(5) > 0, np.nan, 1.0)), {}, "5 of its 25 pixels"),
    "inf": (lambda p: _nifti(p / "inf.nii.gz", np.where(np.eye(5) > 0, np.inf, 1.0)), {}, "NaN or Inf"),
    "constant": (lambda p: _png(p / "flat.png", np.full((5, 7), 42, np.uint8)), {}, "constant"),
    "constant_after_window": (
        lambda p: write_dicom(p / "win.dcm", asym(high=219), WindowCenter=3000, WindowWidth=10),
        {},
        "use_voi=False",
    ),
    "multiframe_dicom": (lambda p: _multiframe_dicom(p / "mf.dcm"), {}, "multi-frame"),
    "multipage_tiff": (lambda p: _multipage_tiff(p / "pages.tif"), {}, "2 pages"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_name_file_and_problem(tmp_path, case):
    make, kwargs, problem = ERROR_CASES[case]
    path = make(tmp_path)
    with pytest.raises(RadiographReadError, match=re.escape(str(path)) + ".*" + re.escape(problem)) as info:
        LoadRadiograph(**kwargs)(path)
    assert info.value.filename == str(path)
    assert isinstance(info.value, ValueError)
    again = pickle.loads(pickle.dumps(info.value))  # survives DataLoader workers
    assert str(again) == str(info.value)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="spatial_dims"):
        LoadRadiograph(spatial_dims=4)
    with pytest.raises(RadiographReadError, match="file path"):
        LoadRadiograph()(123)
