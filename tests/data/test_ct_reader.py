"""LoadCT / LoadCTd: HU volumes in RAS from NIfTI, NRRD and DICOM series folders, checked against the file geometry."""

from __future__ import annotations

import logging
import pickle
import re
import uuid
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor, list_data_collate, set_track_meta
from pydicom.dataset import Dataset as DicomDataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from monai_osteo.data.readers import CTReadError, LoadCT, LoadCTd, RadiographReadError
from tests.utils import assert_allclose

CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
LPS = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS world coordinates


def _volume(shape=(5, 6, 7), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 2000, shape).astype(np.int16)


def _affine(columns, origin) -> np.ndarray:
    """RAS affine whose column i is the world step (mm) of voxel axis i."""
    a = np.eye(4)
    a[:3, :3] = np.asarray(columns, dtype=np.float64).T
    a[:3, 3] = origin
    return a


AFF_LPS = _affine([[-0.7, 0, 0], [0, -0.7, 0], [0, 0, 2.5]], [10.0, 20.0, -30.0])  # axes towards L, P, S
AFF_PSR = _affine([[0, -0.7, 0], [0, 0, 2.5], [0.7, 0, 0]], [-5.0, 40.0, 12.0])  # axes towards P, S, R


def _nifti(path: Path, arr: np.ndarray, affine: np.ndarray = AFF_LPS) -> Path:
    nib.save(nib.Nifti1Image(arr, affine), path)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _value_at_world(out: MetaTensor, world_ras: np.ndarray) -> float:
    """The loaded voxel at a RAS world point, located with the returned affine (must hit a voxel centre)."""
    idx = np.linalg.solve(np.asarray(out.affine, dtype=np.float64), np.append(world_ras, 1.0))[:3]
    assert_allclose(idx, np.round(idx), atol=1e-3, msg="world point falls between voxels")
    return float(out[(0, *np.round(idx).astype(int))])


def _assert_world_consistent(out: MetaTensor, arr: np.ndarray, world_of, n: int = 25, seed: int = 1) -> None:
    """At random source voxels, the loaded value at that voxel's world point equals the source value (exactly)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        ijk = tuple(int(rng.integers(s)) for s in arr.shape)
        assert _value_at_world(out, world_of(ijk)) == float(arr[ijk]), ijk


def _assert_ras_diagonal(out: MetaTensor, spacing) -> None:
    a = np.asarray(out.affine, dtype=np.float64)
    assert_allclose(a[:3, :3], np.diag(spacing), atol=1e-5)
    assert_allclose(out.meta["spacing"], spacing, atol=1e-5)


@pytest.mark.parametrize(
    "affine, axcodes, expected",
    [
        (AFF_LPS, "LPS", lambda a: a[::-1, ::-1, :]),  # flip the L and P axes
        (AFF_PSR, "PSR", lambda a: a.transpose(2, 0, 1)[:, ::-1, :]),  # axis 0 <- k, axis 1 <- reversed i, 2 <- j
    ],
)
def test_nifti_hu_in_ras(tmp_path, affine, axcodes, expected):
    arr = _volume()
    out = LoadCT()(_nifti(tmp_path / "ct.nii.gz", arr, affine))
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    assert out.meta["original_axcodes"] == axcodes and out.meta["reader"] == "NibabelReader"
    assert np.array_equal(out[0].numpy(), expected(arr).astype(np.float32))  # RAS: axes point to R, A, S
    _assert_world_consistent(out, arr, lambda ijk: (affine @ np.append(ijk, 1.0))[:3])
    _assert_ras_diagonal(out, (0.7, 0.7, 2.5))
    assert_allclose(out.meta["original_affine"], affine, atol=1e-5)
    assert out.meta["value_range"] == (float(arr.min()), float(arr.max()))
    assert tuple(out.meta["spatial_shape"]) == tuple(out.shape[1:])


@pytest.mark.parametrize(
    "name, space", [("ct.nrrd", "left-posterior-superior"), ("ct.nhdr", "right-anterior-superior")]
)
def test_nrrd_matches_nifti(tmp_path, name, space):
    arr = _volume()
    flip = LPS if space.startswith("left") else np.eye(3)
    header = {"space": space, "space directions": (flip @ AFF_PSR[:3, :3]).T, "space origin": flip @ AFF_PSR[:3, 3]}
    nrrd.write(str(tmp_path / name), arr, header)
    ref = LoadCT()(_nifti(tmp_path / "ct.nii.gz", arr, AFF_PSR))
    out = LoadCT()(tmp_path / name)
    assert out.meta["reader"] == "ITKReader"
    assert np.array_equal(out.numpy(), ref.numpy())
    assert_allclose(out.affine, ref.affine, atol=1e-5)
    assert_allclose(out.meta["spacing"], (0.7, 0.7, 2.5), atol=1e-5)


def _dicom_series(
    folder: Path,
    stored: np.ndarray,
    iop=(1, 0, 0, 0, 1, 0),
    origin=(-100.0, -120.0, -50.0),
    step: float = 2.5,
    pixel_spacing=(0.6, 0.8),
    intercept: float | None = -1024.0,
    series_uid: str | None = None,
    seed: int = 0,
) -> list[np.ndarray]:
    """Write ``stored`` (rows, cols, slices) as CT slices with random file names and shuffled InstanceNumbers.

    Returns the ImagePositionPatient (LPS, mm) of each slice; slice k lies at origin + k * step * normal.
    """
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    iop = np.asarray(iop, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    series_uid = series_uid or generate_uid()
    numbers = rng.permutation(stored.shape[-1]) + 1  # acquisition order unrelated to position
    positions = []
    for k in range(stored.shape[-1]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CT_SOP_CLASS, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = DicomDataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CT_SOP_CLASS, meta.MediaStorageSOPInstanceUID, "CT"
        ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, int(numbers[k])
        positions.append(np.asarray(origin) + k * step * normal)
        ds.ImagePositionPatient = [round(float(v), 4) for v in positions[-1]]
        ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.PixelSpacing, ds.SliceThickness = list(pixel_spacing), step
        ds.Rows, ds.Columns = stored.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        if intercept is not None:
            ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
        ds.PixelData = np.ascontiguousarray(stored[..., k].astype(np.uint16)).tobytes()
        ds.save_as(folder / f"{uuid.uuid4().hex}.dcm", enforce_file_format=True)
    return positions


def _stored(shape=(5, 7, 8), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3000, shape).astype(np.uint16)


@pytest.mark.parametrize("iop", [(1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1)], ids=["axial", "sagittal"])
def test_dicom_series_hu_at_world_positions(tmp_path, iop):
    stored, ps = _stored(), (0.6, 0.8)
    positions = _dicom_series(tmp_path / "series", stored, iop=iop, pixel_spacing=ps)
    (tmp_path / "series" / "notes.txt").write_text("not DICOM")  # left out, as by MONAI
    out = LoadCT()(tmp_path / "series")
    row_dir, col_dir = np.asarray(iop[:3], float), np.asarray(iop[3:], float)

    def world(rck):  # DICOM PS3.3 C.7.6.2.1.1: row index r moves along the column cosines by PixelSpacing[0]
        r, c, k = rck
        return LPS @ (positions[k] + c * ps[1] * row_dir + r * ps[0] * col_dir)

    _assert_world_consistent(out, stored.astype(np.float64) - 1024, world, n=40)
    assert out.meta["value_range"] == (float(stored.min()) - 1024, float(stored.max()) - 1024)
    assert out.meta["reader"] == "PydicomReader" and out.meta["modality"] == "CT"
    assert not [k for k in out.meta if re.fullmatch(r"[0-9A-Fa-f]{8}", str(k))]
    if iop[:3] == (1, 0, 0):  # axial: axis 0 <- reversed columns (L->R), axis 1 <- reversed rows (P->A), 2 <- slices
        assert np.array_equal(out[0].numpy(), stored[::-1, ::-1, :].transpose(1, 0, 2).astype(np.float32) - 1024)
        _assert_ras_diagonal(out, (0.8, 0.6, 2.5))
    else:  # sagittal: slices step towards R, columns towards P, rows towards I
        _assert_ras_diagonal(out, (2.5, 0.8, 0.6))


def test_dicom_two_series_listed(tmp_path):
    uid_a, uid_b = generate_uid(), generate_uid()
    _dicom_series(tmp_path / "mixed", _stored(), series_uid=uid_a)
    _dicom_series(tmp_path / "mixed", _stored((5, 7, 3)), origin=(0, 0, 100), series_uid=uid_b)
    pattern = re.escape(str(tmp_path / "mixed")) + r".*2 DICOM series.*" + re.escape(f"{uid_a} (8 files)")
    with pytest.raises(CTReadError, match=pattern + r".*" + re.escape(f"{uid_b} (3 files)") + ".*one series"):
        LoadCT()(tmp_path / "mixed")


def test_dicom_missing_slice_is_a_gap(tmp_path):
    folder = tmp_path / "gap"
    _dicom_series(folder, _stored())
    by_z = sorted(folder.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    by_z[3].unlink()
    with pytest.raises(CTReadError, match=re.escape(str(folder)) + r".*gap of 5 mm.*2\.5 mm apart.*missing"):
        LoadCT()(folder)


def test_dicom_without_rescale_warns(tmp_path, caplog):
    _dicom_series(tmp_path / "raw", _stored(), intercept=None)
    with caplog.at_level(logging.WARNING, logger="monai_osteo.data.readers.ct"):
        out = LoadCT(keep_dicom_header=True)(tmp_path / "raw")
    assert out.min() >= 0  # loaded unchanged, not refused
    assert out.meta["0020000E"]["Value"] == [out.meta["series_uid"]]  # the header kept on request
    assert "no RescaleIntercept" in caplog.text and "raw stored values" in caplog.text


def _labels(image: np.ndarray) -> np.ndarray:
    return ((image > 500) * 3 + (image < -500)).astype(np.int16)


def test_label_map_on_ct_grid(tmp_path):
    arr = _volume()
    ct = _nifti(tmp_path / "ct.nii.gz", arr)
    flip = AFF_LPS @ np.array([[-1, 0, 0, arr.shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    label_same = _nifti(tmp_path / "lab.nii.gz", _labels(arr))
    label_flipped = _nifti(tmp_path / "lab_flipped.nii.gz", _labels(arr)[::-1].copy(), flip)  # same grid, stored L<->R
    t = LoadCTd(keys=("image", "label", "other"), label_keys=("label", "other"))
    d = t({"image": str(ct), "label": str(label_same), "other": str(label_flipped)})
    assert np.array_equal(d["image"].numpy(), LoadCT()(ct).numpy())  # dict agrees with array
    for key in ("label", "other"):
        assert d[key].shape == d["image"].shape and d[key].dtype == torch.float32
        assert np.array_equal(d[key].numpy(), _labels(d["image"].numpy()).astype(np.float32))
        assert_allclose(d[key].affine, d["image"].affine, atol=1e-6)
    batch = list_data_collate([d, d])
    assert batch["image"].shape == (2, 1, 5, 6, 7) and batch["image"].meta["spacing"].shape == (2, 3)


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p, a: _nifti(p / "lab.nii.gz", _labels(a)[:-1]), r"shape \(4, 6, 7\).*shape \(5, 6, 7\)"),
        (lambda p, a: _nifti(p / "lab.nii.gz", _labels(a), AFF_LPS + np.eye(4, k=3) * 2), r"origin"),
    ],
    ids=["shape", "shifted"],
)
def test_label_map_off_grid(tmp_path, make, problem):
    arr = _volume()
    ct, lab = _nifti(tmp_path / "ct.nii.gz", arr), make(tmp_path, arr)
    pattern = (
        re.escape(str(lab)) + r".*" + re.escape(str(ct)) + r".*" + problem + r".*ResampleToMatch\(mode='nearest'\)"
    )
    with pytest.raises(CTReadError, match=pattern):
        LoadCTd(keys=("label", "image"), label_keys="label")({"image": str(ct), "label": str(lab)})


def test_label_map_not_integer(tmp_path):
    arr = _volume()
    ct, lab = _nifti(tmp_path / "ct.nii.gz", arr), _nifti(tmp_path / "lab.nii.gz", _labels(arr) * np.float32(0.5))
    with pytest.raises(CTReadError, match=re.escape(str(lab)) + r".*integer labels.*linear.*mode='nearest'"):
        LoadCTd(keys=("image", "label"), label_keys=("label",))({"image": str(ct), "label": str(lab)})


def test_dict_arguments():
    with pytest.raises(ValueError, match="label_keys must be among keys"):
        LoadCTd(keys="image", label_keys="label")
    with pytest.raises(ValueError, match="image_key must name the CT"):
        LoadCTd(keys=("ct", "label"), label_keys="label")
    assert LoadCTd(keys=("ct", "label"), label_keys="label", image_key=None).image_key == "ct"
    with pytest.raises(ValueError, match="axcodes"):
        LoadCT(axcodes="RA")


def _zero_spacing(p: Path) -> Path:
    header = nib.Nifti1Header()
    header.set_data_shape((5, 6, 7))
    header.set_zooms((0.7, 0.0, 2.5))  # as written by a broken exporter (pixdim and sform agree, so MONAI keeps them)
    header.set_sform(np.diag([0.7, 0.0, 2.5, 1.0]), code="aligned")
    nib.save(nib.Nifti1Image(_volume(), None, header), p / "zero.nii.gz")
    return p / "zero.nii.gz"


def _single_dicom(p: Path) -> Path:
    _dicom_series(p / "one", _stored((5, 7, 1)))
    return next((p / "one").iterdir())


def _one_slice_folder(p: Path) -> Path:
    _dicom_series(p / "one", _stored((5, 7, 1)))
    return p / "one"


# case: (file factory, text the message must contain after the file name)
ERROR_CASES = {
    "missing": (lambda p: p / "missing.nii.gz", "does not exist"),
    "empty": (lambda p: _write(p / "empty.nii.gz", b""), "empty (0 bytes)"),
    "unsupported": (lambda p: _write(p / "notes.txt", b"hello"), "unsupported file type"),
    "corrupt": (lambda p: _write(p / "junk.nii.gz", b"not a nifti" * 50), "NibabelReader could not decode"),
    "truncated": (lambda p: _write(p / "t.nii", (_nifti(p / "v.nii", _volume()).read_bytes())[:400]), "truncated"),
    "2d": (lambda p: _nifti(p / "img.nii.gz", _volume((5, 6))), "(2-D); a CT volume was expected"),
    "2d_singleton": (lambda p: _nifti(p / "img1.nii.gz", _volume((5, 6, 1))), "a CT volume was expected"),
    "4d": (lambda p: _nifti(p / "4d.nii.gz", _volume((5, 6, 7, 2))), "(4-D); a single 3-D CT volume"),
    "nan": (lambda p: _nifti(p / "nan.nii.gz", np.where(np.eye(5)[..., None] > 0, np.nan, np.ones(3))), "5 of its 75 "),
    "constant": (lambda p: _nifti(p / "flat.nii.gz", np.full((4, 5, 6), -1000, np.int16)), "constant"),
    "no_spacing": (_zero_spacing, "set the voxel spacing in the header"),
    "single_dicom": (_single_dicom, "pass the folder of the series"),
    "one_slice_folder": (_one_slice_folder, "a single DICOM image"),
    "empty_folder": (lambda p: (p / "none").mkdir() or p / "none", "no DICOM image file"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_name_file_and_fix(tmp_path, case):
    make, problem = ERROR_CASES[case]
    path = make(tmp_path)
    with pytest.raises(CTReadError, match=re.escape(str(path)) + ".*" + re.escape(problem)) as info:
        LoadCT()(path)
    assert info.value.filename == str(path)
    assert isinstance(info.value, RadiographReadError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith("Cannot load CT volume")
    again = pickle.loads(pickle.dumps(info.value))  # survives DataLoader workers
    assert type(again) is CTReadError and str(again) == str(info.value)


def test_track_meta_off_returns_plain_reoriented_tensor(tmp_path):
    path = _nifti(tmp_path / "ct.nii.gz", _volume())
    ref = LoadCT()(path)
    set_track_meta(False)
    try:
        out = LoadCT()(path)
    finally:
        set_track_meta(True)
    assert not isinstance(out, MetaTensor) and torch.equal(out, ref.as_tensor())
