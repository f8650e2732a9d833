"""GLCMTextureMap / TexturePool against pyradiomics' voxel-based extraction (the oracle, settings pinned below)
on random images, a phantom radiograph and real DICOM, 2-D and 3-D, with and without masks; plus chunking,
float32, array == dict, types, metadata and errors. Images are tiny: pyradiomics runs ~1-3k voxels/s."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_osteo.transforms.texture import (
    GLCM_FEATURES,
    TP_SWAV_FEATURES,
    GLCMTextureMap,
    GLCMTextureMapd,
    TexturePool,
    TexturePoold,
    glcm_directions,
    glcm_texture_maps,
    window_sum,
)
from tests.utils import assert_allclose

#: pyradiomics settings pinned so the oracle cannot drift with its defaults
PYRADIOMICS_SETTINGS = {
    "distances": [1], "symmetricalGLCM": True, "weightingNorm": None, "force2D": False, "label": 1,
    "voxelBatch": -1, "initValue": float("nan"), "additionalInfo": False, "normalize": False,
    "resampledPixelSpacing": None, "preCrop": False, "resegmentRange": None, "minimumROIDimensions": 1,
}
RTOL64 = 1e-4  # float64 path vs pyradiomics (the bound; measured ~1e-15)


def pyradiomics_maps(image, mask, features, radius, masked, bin_width=25, bin_count=None) -> np.ndarray:
    """(F, *image.shape) pyradiomics voxel-based maps, NaN where it gives no value (outside the mask too)."""
    radiomics = pytest.importorskip("radiomics")
    sitk = pytest.importorskip("SimpleITK")
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    radiomics.setVerbosity(logging.ERROR)
    settings = dict(PYRADIOMICS_SETTINGS, kernelRadius=radius, maskedKernel=masked, binWidth=bin_width)
    if bin_count is not None:
        settings["binCount"] = bin_count
    extractor = RadiomicsFeatureExtractor(**settings)
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(glcm=list(features))
    mask = np.ones(image.shape, np.uint8) if mask is None else mask.astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of empty kernels
        result = extractor.execute(sitk.GetImageFromArray(image), sitk.GetImageFromArray(mask), voxelBased=True)
    out = np.full((len(features), *image.shape), np.nan)
    for k, name in enumerate(features):
        cropped = result[f"original_glcm_{name}"]  # the image cropped to the mask's box + radius
        values = sitk.GetArrayFromImage(cropped)
        start = [int(round(o)) for o in cropped.GetOrigin()][::-1]  # spacing 1, origin 0: origin = index
        out[(k, *(slice(s, s + n) for s, n in zip(start, values.shape)))] = values
    out[:, mask == 0] = np.nan
    return out


def check_oracle(image, mask=None, features=GLCM_FEATURES, radius=1, masked=True, bin_width=25, bin_count=None):
    """Our float64 maps equal pyradiomics' (rtol ``RTOL64``) where it has values, NaN where it has none."""
    expected = pyradiomics_maps(image, mask, features, radius, masked, bin_width, bin_count)
    transform = GLCMTextureMap(features, radius, bin_width, bin_count, masked, dtype="float64")
    actual = transform(image[None], mask)
    assert isinstance(actual, np.ndarray) and actual.shape == expected.shape and actual.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg="no-value voxels differ")
    assert np.isfinite(expected).sum() > 0
    assert_allclose(np.nan_to_num(actual), np.nan_to_num(expected), rtol=RTOL64, atol=0.0)


def blob_mask(shape, rng) -> np.ndarray:
    """Irregular ROI: a box with a hole, random dropouts and isolated voxels (pair-less kernels)."""
    m = np.zeros(shape, np.uint8)
    m[tuple(slice(n // 6, n - n // 5) for n in shape)] = 1
    m[tuple(slice(n // 3, n // 3 + 2) for n in shape)] = 0
    m[rng.random(shape) < 0.1] = 0
    m[(0,) * len(shape)] = 1
    m[(shape[0] - 1, *([1] * (len(shape) - 1)))] = 1
    return m


@pytest.mark.parametrize("radius", [1, 2])
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("with_mask", [False, True])
def test_random_2d_matches_pyradiomics(radius, masked, with_mask):
    rng = np.random.default_rng(radius)
    image = rng.normal(100.0, 60.0, (24, 24))
    mask = blob_mask(image.shape, rng) if with_mask else None
    if mask is not None:
        image[mask == 0] -= 150.0  # darker outside: the unmasked kernel bins over the padded box, not the ROI
    check_oracle(image, mask, radius=radius, masked=masked)


@pytest.mark.parametrize("radius, masked", [(1, True), (2, True), (2, False)])
def test_random_3d_matches_pyradiomics(radius, masked):
    rng = np.random.default_rng(10 + radius)
    image = rng.integers(-1024, 1200, (10, 10, 8)).astype(np.int16)  # CT-like integers
    check_oracle(image, blob_mask(image.shape, rng), TP_SWAV_FEATURES + ("Idmn",), radius, masked)


def test_3d_without_mask_and_bin_count_match_pyradiomics():
    rng = np.random.default_rng(3)
    image = rng.normal(0.0, 1.0, (8, 9, 7)).astype(np.float32)  # binned in float32 arithmetic, as pyradiomics
    check_oracle(image, None, TP_SWAV_FEATURES, radius=1, bin_count=16)
    check_oracle(image[..., :5], blob_mask((8, 9, 5), rng), TP_SWAV_FEATURES, 2, masked=True, bin_width=0.3)


def test_2d_equals_single_slice_volume():
    """A 2-D image and the (1, H, W) volume give the same maps, in pyradiomics as here."""
    rng = np.random.default_rng(4)
    image, mask = rng.integers(0, 400, (16, 18)).astype(np.float64), blob_mask((16, 18), rng)
    expected = pyradiomics_maps(image[None], mask[None], TP_SWAV_FEATURES, 2, True)[:, 0]
    transform = GLCMTextureMap(kernel_radius=2, dtype="float64")
    np.testing.assert_array_equal(transform(image[None], mask), transform(image[None, None], mask[None])[:, 0])
    assert_allclose(np.nan_to_num(transform(image[None], mask)), np.nan_to_num(expected), rtol=RTOL64)


@pytest.fixture(scope="module")
def phantom_crop() -> tuple[np.ndarray, np.ndarray]:
    """24x24 uint16 crop of a phantom hand radiograph across a bone edge, and its bone mask."""
    from monai_osteo.data.phantoms import render_subject, sample_subject

    rendered, _ = render_subject(sample_subject(np.random.default_rng(0)), seed=0, stream=5, index=0, height=256)
    bone = rendered.truth > 0
    y, x = min(((y, x) for y in range(0, 232, 8) for x in range(0, 155, 8)),
               key=lambda p: abs(bone[p[0]:p[0] + 24, p[1]:p[1] + 24].mean() - 0.5))
    return rendered.image[y:y + 24, x:x + 24], bone[y:y + 24, x:x + 24].astype(np.uint8)


@pytest.mark.parametrize("masked", [True, False])
def test_phantom_radiograph_matches_pyradiomics(phantom_crop, masked):
    image, bone = phantom_crop
    assert image.dtype == np.uint16 and 0 < bone.mean() < 1
    check_oracle(image, bone, TP_SWAV_FEATURES, radius=2, masked=masked, bin_width=1024)  # ~40 levels
    if masked:
        check_oracle(image, None, TP_SWAV_FEATURES, radius=1, bin_count=32)


def test_dicom_ct_2d_and_mr_3d_match_pyradiomics():
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ct.pixel_array[40:64, 40:64].astype(np.float64) * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    check_oracle(hu, None, TP_SWAV_FEATURES, radius=2)
    check_oracle(hu, (hu > np.median(hu)).astype(np.uint8), TP_SWAV_FEATURES, radius=1, masked=True)
    mr = pydicom.dcmread(get_testdata_file("emri_small.dcm")).pixel_array[:, 24:34, 24:34]  # (10, 10, 10) uint16
    check_oracle(mr[:8], (mr[:8] > 120).astype(np.uint8), TP_SWAV_FEATURES, radius=1, masked=True)


def test_chunked_equals_unchunked():
    rng = np.random.default_rng(5)
    image = torch.from_numpy(rng.integers(0, 500, (9, 8, 11)).astype(np.float32))
    mask = torch.from_numpy(blob_mask((9, 8, 11), rng))
    for roi, masked in ((mask, True), (mask, False), (None, True)):
        whole = glcm_texture_maps(image, roi, GLCM_FEATURES, 2, masked_kernel=masked, chunk_size=11)
        for chunk in (1, 2, 3, 5):
            chunked = glcm_texture_maps(image, roi, GLCM_FEATURES, 2, masked_kernel=masked, chunk_size=chunk)
            assert torch.equal(torch.nan_to_num(whole, 7.0), torch.nan_to_num(chunked, 7.0)), (masked, chunk)


def test_float32_close_to_float64():
    rng = np.random.default_rng(6)
    image = rng.integers(0, 65535, (1, 40, 40)).astype(np.uint16)  # ~2600 levels: sums past 2**24 in float32
    maps32 = GLCMTextureMap(GLCM_FEATURES, 2)(image)
    maps64 = GLCMTextureMap(GLCM_FEATURES, 2, dtype="float64")(image)
    assert maps32.dtype == np.float32
    assert_allclose(maps32.astype(np.float64), maps64, rtol=1e-5)


def test_directions_and_window_sum():
    assert len(glcm_directions((5, 6))) == 4 and len(glcm_directions((5, 6, 7))) == 13
    assert glcm_directions((1, 6, 7)) == [(0, 1, 1), (0, 1, 0), (0, 1, -1), (0, 0, 1)]
    x = torch.arange(1.0, 8.0)[None]  # length 7
    expected = [sum(x[0, max(v - 2, 0):min(v + 1, 7) + 1]) for v in range(8)]  # offsets [-2, 1], size 8
    assert_allclose(window_sum(x, 1, -2, 1, 8)[0], torch.stack(expected))


def test_fill_value_mask_layouts_and_types():
    rng = np.random.default_rng(7)
    image, mask = rng.integers(0, 300, (1, 12, 13)).astype(np.int32), blob_mask((12, 13), rng)
    nan_maps = GLCMTextureMap(kernel_radius=1)(image, mask)
    filled = GLCMTextureMap(kernel_radius=1, fill_value=-1.0)(image, mask[None])
    assert_allclose(filled, np.where(np.isnan(nan_maps), -1.0, nan_maps))
    assert (filled[:, mask == 0] == -1).all()
    tensor = GLCMTextureMap(kernel_radius=1)(torch.from_numpy(image), torch.from_numpy(mask))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32 and tensor.shape == (4, 12, 13)
    meta = MetaTensor(torch.from_numpy(image).float(), meta={"filename_or_obj": "vertebra.nii.gz"})
    out = GLCMTextureMap(kernel_radius=1)(meta)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "vertebra.nii.gz"
    assert_allclose(out.as_tensor(), GLCMTextureMap(kernel_radius=1)(torch.from_numpy(image)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    rng = np.random.default_rng(8)
    image, mask = torch.from_numpy(rng.normal(0, 100, (1, 10, 11, 9))), torch.from_numpy(blob_mask((10, 11, 9), rng))
    transform = GLCMTextureMap(GLCM_FEATURES, 2, dtype="float64", fill_value=0.0)
    out = transform(image.cuda(), mask.cuda())
    assert out.device.type == "cuda"
    assert_allclose(out, transform(image, mask), rtol=1e-12)


def test_dict_equals_array():
    rng = np.random.default_rng(9)
    data = {"img": torch.from_numpy(rng.normal(0, 80, (1, 11, 12))), "roi": blob_mask((11, 12), rng)}
    out = GLCMTextureMapd(["img"], mask_key="roi", kernel_radius=2)(data)
    assert_allclose(torch.nan_to_num(out["img_glcm"]), torch.nan_to_num(GLCMTextureMap(kernel_radius=2)(
        data["img"], data["roi"])))
    assert out["img"] is data["img"]
    pool = TexturePoold("img", mask_key="roi", normalize="minmax")(data)
    assert_allclose(pool["img"], TexturePool(normalize="minmax")(data["img"], data["roi"]))
    kept = TexturePoold("img", output_keys="pool", include_image=False)(data)
    assert kept["pool"].shape == (4, 11, 12) and kept["img"] is data["img"]


@pytest.mark.parametrize("normalize", ["zscore", "minmax", "none"])
def test_texture_pool_channels(normalize):
    rng = np.random.default_rng(11)
    image, mask = rng.normal(300, 100, (1, 14, 10, 6)).astype(np.float32), blob_mask((14, 10, 6), rng)
    pool = TexturePool(kernel_radius=1, normalize=normalize, nan_fill=0.0)(image, mask)
    maps = GLCMTextureMap(kernel_radius=1)(image, mask)
    assert pool.shape == (5, 14, 10, 6) and pool.dtype == np.float32 and np.isfinite(pool).all()
    for c in range(1, 5):
        has = ~np.isnan(maps[c - 1])
        values = pool[c][has]
        if normalize == "zscore":
            assert abs(values.mean()) < 1e-4 and abs(values.std() - 1) < 1e-4
        elif normalize == "minmax":
            assert_allclose([values.min(), values.max()], [0.0, 1.0], atol=1e-6)
        else:
            assert_allclose(values, maps[c - 1][has])
        assert (pool[c][~has] == 0).all()
    roi = mask != 0
    if normalize == "zscore":
        assert abs(pool[0][roi].mean()) < 1e-4 and abs(pool[0][roi].std() - 1) < 1e-4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": ("Entropy",)}, "features must"),
        ({"features": ()}, "features must"),
        ({"kernel_radius": 0}, "kernel_radius must"),
        ({"bin_width": -1}, "bin_width must"),
        ({"bin_count": 0}, "bin_count must"),
        ({"dtype": "int32"}, "dtype must"),
        ({"chunk_size": 0}, "chunk_size must"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GLCMTextureMap(**kwargs)


def test_call_errors():
    transform = GLCMTextureMap()
    with pytest.raises(ValueError, match="img must be channel-first"):
        transform(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="img must be channel-first"):
        transform(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="mask must have"):
        transform(np.zeros((1, 8, 8)), np.ones((8, 7)))
    with pytest.raises(ValueError, match="at least one ROI voxel"):
        transform(np.zeros((1, 8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="finite"):
        transform(np.full((1, 8, 8), np.nan))
    with pytest.raises(ValueError, match="normalize must"):
        TexturePool(normalize="l2")
