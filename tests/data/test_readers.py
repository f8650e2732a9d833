"""Tests of LoadRadiograph / LoadRadiographd on real pydicom-data radiographs and on files written here."""

from __future__ import annotations

import re

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
import torch
from monai.data import DataLoader, Dataset, set_track_meta
from monai.data.utils import affine_to_spacing
from monai.transforms import Compose, ScaleIntensityd
from PIL import Image

from monai_osteo.data.readers import (
    LoadRadiograph,
    LoadRadiographd,
    apply_voi_window,
    rgb_to_gray,
)
from tests.data.reader_files import asym, check_output, dicom_linear_window, minmax, pydicom_data, write_dicom
from tests.utils import assert_allclose

# ---------------------------------------------------------------- real radiographs (pydicom-data)


@pytest.mark.parametrize("name", ["RG3_UNCR.dcm", "RG1_UNCR.dcm"])
def test_real_monochrome1_cr(name):
    path = pydicom_data(name)
    ds = pydicom.dcmread(path)
    img = LoadRadiograph()(path)
    check_output(img, (1, ds.Rows, ds.Columns))
    meta = img.meta
    assert meta["photometric_interpretation"] == "MONOCHROME1" and meta["modality"] == "CR"
    assert meta["inverted"] and meta["windowed"]
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    assert meta["window"] == (c, w)
    expected = minmax(1.0 - dicom_linear_window(ds.pixel_array, c, w))  # oracle: the standard's formula
    assert_allclose(img[0], expected, atol=1e-6)
    # MONOCHROME1: high stored value = dark, so the output anti-correlates with the stored values
    assert np.corrcoef(img[0].numpy()[::8, ::8].ravel(), ds.pixel_array[::8, ::8].ravel())[0, 1] < -0.9
    # neither file has a usable spacing (RG1 stores PixelSpacing 0.000\0.000): unknown, unit affine
    assert meta["pixel_spacing_source"] == "unknown" and np.isnan(meta["pixel_spacing"]).all()
    assert_allclose(meta["spacing"], [1.0, 1.0])
    assert meta["filename_or_obj"] == path and meta["original_shape"] == (ds.Rows, ds.Columns)
    assert not any(re.fullmatch(r"[0-9A-Fa-f]{8}", str(k)) for k in meta)  # raw tags pruned


def test_real_jpeg2000_lossless_matches_uncompressed():
    ref = LoadRadiograph()(pydicom_data("RG3_UNCR.dcm"))
    img = LoadRadiograph()(pydicom_data("RG3_J2KR.dcm"))
    assert_allclose(img, ref, atol=1e-6)


# ---------------------------------------------------------------- generated DICOM


def test_dicom_monochrome1_equals_monochrome2(tmp_path):
    stored = asym(high=4000)
    m2 = LoadRadiograph()(write_dicom(tmp_path / "m2.dcm", stored, "MONOCHROME2"))
    m1 = LoadRadiograph()(write_dicom(tmp_path / "m1.dcm", 4095 - stored, "MONOCHROME1"))
    assert_allclose(m1, m2, atol=1e-6)
    assert m1.meta["inverted"] and not m2.meta["inverted"]
    assert_allclose(m2[0], minmax(stored), atol=1e-6)
    # with mirrored VOI windows (LINEAR_EXACT is symmetric) the two still agree
    kw = {"WindowWidth": 1000, "VOILUTFunction": "LINEAR_EXACT"}
    w2 = LoadRadiograph()(write_dicom(tmp_path / "w2.dcm", stored, "MONOCHROME2", WindowCenter=600, **kw))
    w1 = LoadRadiograph()(write_dicom(tmp_path / "w1.dcm", 4095 - stored, "MONOCHROME1", WindowCenter=3495, **kw))
    assert_allclose(w1, w2, atol=1e-6)
    assert w1.meta["windowed"] and w2.meta["windowed"]


def test_dicom_orientation_rows_cols(tmp_path):
    stored = asym(rows=6, cols=9)
    img = LoadRadiograph()(write_dicom(tmp_path / "o.dcm", stored))
    check_output(img, (1, 6, 9))
    assert tuple(np.unravel_index(int(img[0].argmax()), (6, 9))) == (0, 5)
    assert_allclose(img.meta["spatial_shape"], [6, 9])


def test_dicom_rescale_slope_intercept(tmp_path):
    stored = asym().astype(np.int32) - 200  # signed stored values
    path = write_dicom(tmp_path / "r.dcm", stored, bits=16, RescaleSlope=2, RescaleIntercept=-1024)
    raw = LoadRadiograph(normalize=False)(path)
    assert_allclose(raw[0], stored * 2.0 - 1024.0)
    assert raw.meta["rescale"] == (2.0, -1024.0) and not raw.meta["normalized"]
    assert raw.meta["value_range"] == (float(stored.min() * 2 - 1024), float(stored.max() * 2 - 1024))
    assert_allclose(LoadRadiograph()(path)[0], minmax(stored), atol=1e-6)


def test_dicom_voi_window_first_value(tmp_path):
    stored = asym(high=4000)
    path = write_dicom(tmp_path / "v.dcm", stored, WindowCenter=[250, 2000], WindowWidth=[200, 4000])
    img = LoadRadiograph()(path)
    assert img.meta["windowed"] and img.meta["window"] == (250.0, 200.0)
    assert_allclose(img[0], minmax(dicom_linear_window(stored, 250, 200)), atol=1e-6)
    full = LoadRadiograph(use_voi=False)(path)
    assert not full.meta["windowed"] and np.isnan(full.meta["window"]).all()
    assert_allclose(full[0], minmax(stored), atol=1e-6)


@pytest.mark.parametrize(
    "tags, spacing, source",
    [
        ({"PixelSpacing": [0.2, 0.1]}, (0.2, 0.1), "PixelSpacing"),
        ({"ImagerPixelSpacing": [0.15, 0.25]}, (0.15, 0.25), "ImagerPixelSpacing"),
        ({"PixelSpacing": [0.2, 0.1], "ImagerPixelSpacing": [0.3, 0.3]}, (0.2, 0.1), "PixelSpacing"),
        ({"PixelSpacing": [0.0, 0.0], "ImagerPixelSpacing": [0.3, 0.3]}, (0.3, 0.3), "ImagerPixelSpacing"),
    ],
)
def test_dicom_pixel_spacing(tmp_path, tags, spacing, source):
    img = LoadRadiograph()(write_dicom(tmp_path / "s.dcm", asym(), **tags))
    assert img.meta["pixel_spacing"] == spacing and img.meta["pixel_spacing_source"] == source
    assert_allclose(img.meta["spacing"], spacing)
    assert_allclose(affine_to_spacing(img.affine, r=2), spacing, rtol=1e-6)


def test_dicom_with_patient_frame_keeps_consistent_affine(tmp_path):
    tags = {"ImageOrientationPatient": [1, 0, 0, 0, 1, 0], "ImagePositionPatient": [0, 0, 0]}
    img = LoadRadiograph()(write_dicom(tmp_path / "p.dcm", asym(), ImagerPixelSpacing=[0.3, 0.2], **tags))
    assert_allclose(affine_to_spacing(img.affine, r=2), [0.3, 0.2], rtol=1e-6)
    assert img.meta["pixel_spacing"] == (0.3, 0.2)


def test_dicom_rgb_to_gray_and_header_option(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(6, 9, 3)).astype(np.uint8)
    path = write_dicom(tmp_path / "c.dcm", rgb, "RGB", bits=8)
    img = LoadRadiograph(keep_dicom_header=True)(path)
    check_output(img, (1, 6, 9))
    assert_allclose(img[0], minmax(rgb @ np.array([0.299, 0.587, 0.114])), atol=1e-6)
    assert img.meta["photometric_interpretation"] == "RGB" and img.meta["00280004"]["Value"] == ["RGB"]


def test_dicom_without_suffix_is_detected(tmp_path):
    img = LoadRadiograph()(write_dicom(tmp_path / "IM0001", asym()))
    assert img.meta["reader"] == "PydicomReader"


# ---------------------------------------------------------------- PIL formats


@pytest.mark.parametrize(
    "suffix, dtype", [(".png", np.uint8), (".png", np.uint16), (".tif", np.uint8), (".tif", np.uint16)]
)
def test_pil_gray_exact_and_oriented(tmp_path, suffix, dtype):
    a = asym(high=250 if dtype == np.uint8 else 60000).astype(dtype)
    path = tmp_path / f"g{suffix}"
    Image.fromarray(a).save(path)
    img = LoadRadiograph()(path)
    check_output(img, (1, 6, 9))
    assert_allclose(img[0], minmax(a), atol=1e-6)
    assert tuple(np.unravel_index(int(img[0].argmax()), (6, 9))) == (0, 5)
    assert img.meta["reader"] == "PILReader" and img.meta["pixel_spacing_source"] == "unknown"
    assert_allclose(LoadRadiograph(normalize=False)(path)[0], a)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_pil_color_to_gray_luma(tmp_path, mode):
    rgba = np.random.default_rng(1).integers(0, 256, size=(6, 9, 4)).astype(np.uint8)
    arr = rgba if mode == "RGBA" else rgba[..., :3]
    Image.fromarray(arr, mode=mode).save(tmp_path / "c.png")
    img = LoadRadiograph(normalize=False)(tmp_path / "c.png")
    assert_allclose(img[0], rgba[..., :3] @ np.array([0.299, 0.587, 0.114]), rtol=1e-6)
    assert img.meta["photometric_interpretation"] == "RGB"


def test_jpeg_orientation(tmp_path):
    a = np.zeros((40, 64), np.uint8)
    a[:8, 40:48] = 255  # bright block at the top right (8x8-aligned so JPEG keeps it)
    Image.fromarray(a).save(tmp_path / "j.jpg", quality=95)
    img = LoadRadiograph()(tmp_path / "j.jpg")
    check_output(img, (1, 40, 64))
    assert float(img[0, :8, 40:48].mean()) > 0.9 and float(img[0, 20:, :30].mean()) < 0.1


# ---------------------------------------------------------------- NIfTI / NRRD


@pytest.mark.parametrize("shape", [(6, 9), (6, 9, 1)])
def test_nifti_2d(tmp_path, shape):
    a = asym().astype(np.float32).reshape(shape)
    nib.save(nib.Nifti1Image(a, np.diag([0.2, 0.3, 1.0, 1.0])), tmp_path / "a.nii.gz")
    img = LoadRadiograph()(tmp_path / "a.nii.gz")
    check_output(img, (1, 6, 9))
    assert_allclose(img[0], minmax(a.reshape(6, 9)), atol=1e-6)
    assert_allclose(img.meta["pixel_spacing"], (0.2, 0.3), rtol=1e-6)


def test_nrrd_2d(tmp_path):
    a = asym().astype(np.int16)
    nrrd.write(str(tmp_path / "a.nrrd"), a, {"spacings": [0.2, 0.3]})
    img = LoadRadiograph()(tmp_path / "a.nrrd")
    check_output(img, (1, 6, 9))
    assert_allclose(img[0], minmax(a), atol=1e-6)
    assert tuple(np.unravel_index(int(img[0].argmax()), (6, 9))) == (0, 5)
    assert_allclose(img.meta["pixel_spacing"], (0.2, 0.3), rtol=1e-6)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_volume_3d(tmp_path, suffix):
    v = np.random.default_rng(2).normal(size=(4, 5, 6)).astype(np.float32) * 300.0
    path = tmp_path / f"v{suffix}"
    if suffix == ".nrrd":
        header = {"space": "left-posterior-superior", "space directions": np.diag([0.5, 0.6, 0.7]),
                  "space origin": np.zeros(3)}  # fmt: skip
        nrrd.write(str(path), v, header)
    else:
        nib.save(nib.Nifti1Image(v, np.diag([0.5, 0.6, 0.7, 1.0])), path)
    img = LoadRadiograph(spatial_dims=3)(path)
    check_output(img, (1, 4, 5, 6))
    assert_allclose(img[0], minmax(v), atol=1e-6)
    assert_allclose(img.meta["spacing"], [0.5, 0.6, 0.7], rtol=1e-6)
    assert_allclose(LoadRadiograph(spatial_dims=3, normalize=False)(path)[0], v, rtol=1e-6)


# ---------------------------------------------------------------- dictionary version, Compose, Dataset


def test_dict_agrees_with_array(tmp_path):
    path = write_dicom(tmp_path / "d.dcm", asym(), PixelSpacing=[0.1, 0.1])
    out = LoadRadiographd(keys=["image", "other"], allow_missing_keys=True)({"image": str(path), "label": 1})
    ref = LoadRadiograph()(path)
    assert_allclose(out["image"], ref)
    assert out["image"].meta["pixel_spacing"] == ref.meta["pixel_spacing"] == (0.1, 0.1)
    assert out["label"] == 1 and "other" not in out
    with pytest.raises(KeyError):
        LoadRadiographd(keys="other")({"image": str(path)})


def test_compose_dataset_and_collation(tmp_path):
    files = [
        write_dicom(tmp_path / "a.dcm", asym(), PixelSpacing=[0.1, 0.1], WindowCenter=300, WindowWidth=400),
        write_dicom(tmp_path / "b.dcm", 4095 - asym(), "MONOCHROME1", ImagerPixelSpacing=[0.2, 0.2]),
    ]
    transform = Compose([LoadRadiographd(keys="image"), ScaleIntensityd(keys="image", minv=-1.0, maxv=1.0)])
    ds = Dataset([{"image": str(f), "y": i} for i, f in enumerate(files)], transform=transform)
    item = ds[1]
    assert tuple(item["image"].shape) == (1, 6, 9) and float(item["image"].min()) == -1.0
    batch = next(iter(DataLoader(ds, batch_size=2, num_workers=0)))  # different tags per file still collate
    assert tuple(batch["image"].shape) == (2, 1, 6, 9)
    assert list(batch["image"].meta["pixel_spacing_source"]) == ["PixelSpacing", "ImagerPixelSpacing"]


def test_track_meta_off_returns_plain_tensor(tmp_path):
    path = write_dicom(tmp_path / "t.dcm", 4095 - asym(), "MONOCHROME1")
    set_track_meta(False)
    try:
        img = LoadRadiograph()(path)
    finally:
        set_track_meta(True)
    assert type(img) is torch.Tensor and img.dtype == torch.float32
    assert_allclose(img[0], minmax(asym()), atol=1e-6)  # still inverted: the header is read regardless


# ---------------------------------------------------------------- functional


def test_functional_oracles():
    x = np.linspace(-100.0, 1100.0, 241)
    assert_allclose(apply_voi_window(x, 500.0, 301.0), dicom_linear_window(x, 500.0, 301.0), atol=1e-12)
    assert_allclose(apply_voi_window(np.array([500.0]), 500.0, 200.0, "sigmoid"), [0.5])
    with pytest.raises(ValueError, match="width"):
        apply_voi_window(x, 0.0, 1.0)
    assert_allclose(
        rgb_to_gray(np.array([[[255, 0, 0, 9], [0, 255, 0, 9], [0, 0, 255, 9]]])), [[76.245, 149.685, 29.07]]
    )
