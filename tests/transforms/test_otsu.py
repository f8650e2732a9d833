"""OtsuPseudoMask family against skimage (Otsu, threshold_local), a numpy GHT written from Barron's equations,
and the transform invariants (per-image, batch == loop, array == dict, types and metadata kept, clear errors)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ForegroundMask
from skimage.exposure import histogram
from skimage.filters import threshold_local, threshold_otsu

from monai_osteo.transforms.otsu import (
    OtsuPseudoMask,
    OtsuPseudoMaskd,
    batched_histogram,
    ght_criterion,
    histogram_threshold,
    otsu_criterion,
)
from tests.utils import assert_allclose

RANGES = [(0.0, 1.0), (0.0, 255.0), (0.0, 65535.0), (-1024.0, 3071.0), (-1.0, 1.0)]
METHODS = ["otsu", "ght", "adaptive_mean", "adaptive_gaussian"]
BT601 = np.array([0.299, 0.587, 0.114])


def bimodal(rng: np.random.Generator, n: int, size=(64, 64), lo=0.0, hi=1.0, dtype=np.float32) -> np.ndarray:
    """(n, *size) images: two gaussian classes with random share, means and spreads, scaled to ~[lo, hi]."""
    out = []
    for _ in range(n):
        share, (a, b), s = rng.uniform(0.1, 0.9), np.sort(rng.uniform(0.1, 0.9, 2)), rng.uniform(0.03, 0.15, 2)
        fg = rng.random(size) < share
        img = np.where(fg, rng.normal(b, s[1], size), rng.normal(a, s[0], size))
        out.append(lo + (hi - lo) * img)
    return np.stack(out).astype(dtype)


def mask_agreement(a, b) -> float:
    return float(np.mean(np.asarray(a, dtype=bool) == np.asarray(b, dtype=bool)))


@pytest.fixture(scope="module")
def radiographs() -> list[np.ndarray]:
    """Phantom hand radiographs, uint16 (H, W)."""
    from monai_osteo.data.phantoms import render_subject, sample_subject

    out = []
    for i in range(4):
        r, _ = render_subject(sample_subject(np.random.default_rng(i)), seed=0, stream=5, index=i, height=256)
        out.append(r.image)
    return out


# ---------------------------------------------------------------- histogram and Otsu vs skimage


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_histogram_identical_to_skimage(dtype):
    rng = np.random.default_rng(1)
    smooth = bimodal(rng, 8, (40, 50), -3.0, 7.0, dtype)
    quantised = (rng.integers(0, 256, (8, 40, 50)) / 255.0).astype(dtype)  # many values exactly on bin edges
    imgs = np.concatenate([smooth, quantised, rng.standard_normal((4, 40, 50)).astype(dtype) * 1e-3 + 5.0])
    counts, centers, constant = batched_histogram(torch.from_numpy(imgs.reshape(len(imgs), -1)))
    assert not constant.any()
    for b, img in enumerate(imgs):
        ref_counts, ref_centers = histogram(img.ravel(), 256, source_range="image")
        np.testing.assert_array_equal(counts[b].numpy(), ref_counts)
        np.testing.assert_array_equal(centers[b].numpy(), ref_centers)


def test_histogram_blocking_does_not_change_counts(monkeypatch):
    """CPU cache blocking (one block per few images) and the whole-batch path used on GPUs agree."""
    import monai_osteo.transforms.otsu.functional as functional

    x = torch.from_numpy(bimodal(np.random.default_rng(2), 7, (30, 20)).reshape(7, -1))
    blocked = batched_histogram(x)
    for pixels in (1, 1 << 40):
        monkeypatch.setattr(functional, "CPU_BLOCK_PIXELS", pixels)
        for ours, ref in zip(batched_histogram(x), blocked):
            np.testing.assert_array_equal(ours.numpy(), ref.numpy())


@pytest.mark.parametrize("lo,hi", RANGES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_otsu_matches_skimage_on_bimodal_images(lo, hi, dtype):
    n = 48
    imgs = bimodal(np.random.default_rng(int(hi) + 7), n, (64, 64), lo, hi, dtype)
    x = torch.from_numpy(imgs.reshape(n, -1))
    thresholds, _ = histogram_threshold(x)
    counts, centers, _ = batched_histogram(x)
    criterion = otsu_criterion(counts, centers)
    masks = OtsuPseudoMask(batched=True)(imgs[:, None])
    same_bin = 0
    for b in range(n):
        ref = threshold_otsu(imgs[b])
        ref_bin = int(np.flatnonzero(centers[b].numpy() == ref)[0])  # skimage's threshold is one of our centres
        ours_bin = int(np.flatnonzero(centers[b].numpy() == thresholds[b].item())[0])
        if ref_bin == ours_bin:
            same_bin += 1
        else:  # only float32 round-off in skimage's criterion may break a near-tie (adjacent bin)
            assert dtype == np.float32 and abs(ref_bin - ours_bin) == 1
            gap = (criterion[b, ours_bin] - criterion[b, ref_bin]) / criterion[b, ours_bin]
            assert float(gap) < 1e-5
        assert mask_agreement(masks[b, 0], imgs[b] > ref) >= 0.999
    assert same_bin >= (n if dtype == np.float64 else n - 1)


def test_otsu_far_from_zero_float64_exact():
    """A narrow range far from 0 (float32 arithmetic is ill-conditioned there; float64 is exact)."""
    imgs = bimodal(np.random.default_rng(3), 16, (48, 48), 1000.0, 1001.0, np.float64)
    thresholds, _ = histogram_threshold(torch.from_numpy(imgs.reshape(16, -1)))
    np.testing.assert_array_equal(thresholds.numpy(), [threshold_otsu(img) for img in imgs])


def test_otsu_matches_skimage_on_phantom_radiographs(radiographs):
    for img in radiographs:
        gray = img.astype(np.float32)
        ref = threshold_otsu(gray)
        mask = OtsuPseudoMask()(gray[None])
        thresholds, _ = histogram_threshold(torch.from_numpy(gray.reshape(1, -1)))
        assert thresholds.item() == ref
        assert mask_agreement(mask[0], gray > ref) == 1.0
        # integer input is thresholded like its float cast; skimage bins integers per value instead
        np.testing.assert_array_equal(OtsuPseudoMask()(img[None]), mask)
        assert mask_agreement(mask[0], img > threshold_otsu(img)) >= 0.99


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_otsu_matches_skimage_on_real_dicom(name):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    img = pydicom.dcmread(get_testdata_file(name)).pixel_array.astype(np.float32)
    ref = threshold_otsu(img)
    thresholds, _ = histogram_threshold(torch.from_numpy(img.reshape(1, -1)))
    assert thresholds.item() == ref
    assert mask_agreement(OtsuPseudoMask()(img[None])[0], img > ref) == 1.0


def test_rgb_uses_bt601_gray():
    rgb = np.random.default_rng(4).random((3, 40, 30)).astype(np.float32)
    gray = np.tensordot(BT601, rgb.astype(np.float64), axes=1).astype(np.float32)
    mask = OtsuPseudoMask()(torch.from_numpy(rgb))
    assert mask.shape == (1, 40, 30)
    assert mask_agreement(mask[0].numpy(), gray > threshold_otsu(gray)) >= 0.999


def test_agrees_with_monai_foreground_mask():
    """MONAI marks ``image <= threshold`` (dark foreground): our mask is its complement."""
    img = bimodal(np.random.default_rng(5), 1, (64, 64))[0]
    monai_mask = np.asarray(ForegroundMask(threshold="otsu")(img[None]))
    np.testing.assert_array_equal(OtsuPseudoMask(dtype=bool)(img[None]), monai_mask == 0)


# ---------------------------------------------------------------- GHT vs Barron's equations


def ght_reference(counts: np.ndarray, nu=0.0, tau=0.0, kappa=0.0, omega=0.5) -> np.ndarray:
    """Barron's GHT score of every split (class 0 = bins 0..k), from Eq. (GHT) of [1], one split at a time."""
    x = np.arange(len(counts), dtype=np.float64)
    n = counts.astype(np.float64)
    total = n.sum()
    scores = []
    for k in range(len(n) - 1):
        score = 0.0
        for nc, xc, om in ((n[: k + 1], x[: k + 1], omega), (n[k + 1 :], x[k + 1 :], 1 - omega)):
            w = max(nc.sum(), 1e-30)
            p = w / total
            d = (nc * (xc - (nc * xc).sum() / w) ** 2).sum()  # summed squared deviation from the class mean
            v = max((p * nu * tau**2 + d) / (p * nu + w), 1e-30)  # posterior variance (scaled inv. chi^2 prior)
            score += -d / v - w * np.log(v) + 2 * (w + kappa * om) * np.log(w)
        scores.append(score)
    return np.array(scores)


@pytest.mark.parametrize(
    "params", [{}, {"nu": 200.0, "tau": 20.0}, {"nu": 1e4, "tau": 3.0, "kappa": 50.0, "omega": 0.3}]
)
def test_ght_matches_reference(params):
    imgs = bimodal(np.random.default_rng(6), 12, (48, 48), 0.0, 1.0, np.float64)
    x = torch.from_numpy(imgs.reshape(12, -1))
    counts, centers, _ = batched_histogram(x)
    scores = ght_criterion(counts, **params)
    thresholds, _ = histogram_threshold(x, "ght", **params)
    for b in range(12):
        ref = ght_reference(counts[b].numpy(), **params)
        assert_allclose(scores[b], ref, rtol=1e-9, atol=1e-6)
        k = int(np.flatnonzero(centers[b].numpy() == thresholds[b].item())[0])
        assert ref[k] >= ref.max() - 1e-9 * abs(ref.max())  # a maximiser (exact ties: splits across empty bins)


def test_ght_reduces_to_otsu():
    """Barron: nu -> inf, tau -> 0 gives Otsu's method (score -> -(d0 + d1) / tau^2)."""
    imgs = bimodal(np.random.default_rng(7), 32, (64, 64), 0.0, 255.0, np.float32)
    x = torch.from_numpy(imgs.reshape(32, -1))
    otsu, _ = histogram_threshold(x, "otsu")
    ght, _ = histogram_threshold(x, "ght", nu=1e30, tau=1e-6)
    np.testing.assert_array_equal(ght.numpy(), otsu.numpy())


def test_ght_default_is_minimum_error_thresholding():
    """Barron's defaults (nu = tau = kappa = 0) score 1 - N - ell, ell = Kittler-Illingworth's MET cost.

    Where a class has zero spread (one occupied bin) MET is undefined; GHT clips its variance at 1e-30, which
    favours isolating an extreme bin (set nu, tau to avoid it). Elsewhere argmax GHT = argmin MET.
    """
    imgs = bimodal(np.random.default_rng(8), 8, (64, 64), 0.0, 1.0, np.float64)
    counts, _, _ = batched_histogram(torch.from_numpy(imgs.reshape(8, -1)))
    scores = ght_criterion(counts).numpy()
    x = np.arange(256.0)
    for b in range(8):
        n = counts[b].numpy().astype(np.float64)
        ell = np.full(255, np.nan)
        for k in range(255):
            classes = ((n[: k + 1], x[: k + 1]), (n[k + 1 :], x[k + 1 :]))
            if min(np.count_nonzero(nc) for nc, _ in classes) < 2:
                continue
            ell[k] = 1.0
            for nc, xc in classes:
                w = nc.sum()
                var = np.average((xc - np.average(xc, weights=nc)) ** 2, weights=nc)
                ell[k] += w * np.log(var) - 2 * w * np.log(w)
        valid = np.isfinite(ell)
        assert valid.sum() > 100
        assert_allclose(scores[b][valid], 1 - n.sum() - ell[valid], rtol=1e-9)
        assert np.argmax(np.where(valid, scores[b], -np.inf)) == np.nanargmin(ell)


# ---------------------------------------------------------------- adaptive thresholds vs skimage


@pytest.mark.parametrize("method", ["mean", "gaussian"])
@pytest.mark.parametrize("block_size,offset,shape", [(3, 0.0, (40, 50)), (11, 0.02, (64, 48)), (35, -0.05, (21, 30))])
def test_adaptive_matches_threshold_local(method, block_size, offset, shape):
    imgs = bimodal(np.random.default_rng(block_size), 3, shape)
    masks = OtsuPseudoMask(f"adaptive_{method}", batched=True, block_size=block_size, offset=offset)(imgs[:, None])
    for img, mask in zip(imgs, masks):
        ref = threshold_local(img, block_size, method=method, offset=offset)
        assert mask_agreement(mask[0], img > ref) >= 0.999


def test_adaptive_threshold_map_and_sigma_and_3d():
    from monai_osteo.transforms.otsu import local_threshold

    vol = bimodal(np.random.default_rng(9), 1, (12, 14, 10), dtype=np.float64)[0]
    ours = local_threshold(torch.from_numpy(vol)[None], 5, "adaptive_gaussian", offset=0.1, sigma=1.5)[0]
    assert_allclose(ours, threshold_local(vol, 5, method="gaussian", offset=0.1, param=1.5), rtol=1e-10, atol=1e-12)
    ours = local_threshold(torch.from_numpy(vol)[None], 25, "adaptive_mean")[0]  # window larger than the volume
    assert_allclose(ours, threshold_local(vol, 25, method="mean"), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- invariants


@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_loop_and_is_per_image(method):
    rng = np.random.default_rng(10)
    imgs = bimodal(rng, 5, (32, 40))[:, None]
    transform = OtsuPseudoMask(method, batched=True)
    batch = transform(torch.from_numpy(imgs))
    for b in range(5):
        np.testing.assert_array_equal(batch[b].numpy(), transform(torch.from_numpy(imgs[b]), batched=False).numpy())
    other = bimodal(rng, 1, (32, 40), -5000.0, 40000.0)[:, None]  # a very different image joins the batch
    joined = transform(torch.from_numpy(np.concatenate([other, imgs])))
    np.testing.assert_array_equal(joined[1:].numpy(), batch.numpy())
    np.testing.assert_array_equal(transform(torch.from_numpy(imgs)).numpy(), batch.numpy())  # deterministic


@pytest.mark.parametrize("method", METHODS)
def test_array_and_dict_agree(method):
    img = torch.from_numpy(bimodal(np.random.default_rng(11), 1, (30, 30)))
    expected = OtsuPseudoMask(method)(img)
    out = OtsuPseudoMaskd(["image", "other"], method=method, allow_missing_keys=True)({"image": img, "label": 1})
    np.testing.assert_array_equal(out["image_mask"].numpy(), expected.numpy())
    assert out["image"] is img and out["label"] == 1 and "other_mask" not in out
    out = OtsuPseudoMaskd("image", mask_keys="label", method=method)({"image": img})
    np.testing.assert_array_equal(out["label"].numpy(), expected.numpy())
    with pytest.raises(ValueError, match="one key per image key"):
        OtsuPseudoMaskd(["a", "b"], mask_keys="label")


def test_types_dtype_and_metadata_preserved():
    img = bimodal(np.random.default_rng(12), 1, (24, 20))
    out = OtsuPseudoMask()(img)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (1, 24, 20)
    assert set(np.unique(out)) <= {0.0, 1.0}
    out = OtsuPseudoMask(dtype="uint8")(torch.from_numpy(img))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    meta = MetaTensor(torch.from_numpy(img), affine=torch.diag(torch.tensor([0.2, 0.3, 1.0, 1.0])))
    meta.meta["filename_or_obj"] = "hand_001.png"
    out = OtsuPseudoMask()(meta)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "hand_001.png"
    assert_allclose(out.affine, meta.affine)
    for dtype in (np.float64, np.uint8, np.int16):
        assert OtsuPseudoMask()(np.clip(img * 200, 0, 255).astype(dtype)).dtype == np.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(method):
    imgs = torch.from_numpy(bimodal(np.random.default_rng(13), 6, (64, 64), 0.0, 255.0)[:, None])
    cpu = OtsuPseudoMask(method, batched=True)(imgs)
    gpu = OtsuPseudoMask(method, batched=True)(imgs.cuda())
    assert gpu.device.type == "cuda"
    for b in range(6):
        assert mask_agreement(gpu[b].cpu().numpy(), cpu[b].numpy()) >= 0.999


@pytest.mark.parametrize("method", METHODS)
def test_constant_images_give_background_and_warn(method):
    imgs = bimodal(np.random.default_rng(14), 3, (20, 20))[:, None]
    imgs[1] = 0.0  # a blank image
    with pytest.warns(UserWarning, match="1 of 3 image"):
        masks = OtsuPseudoMask(method, batched=True, offset=0.5)(imgs)
    assert np.isfinite(masks).all() and masks[1].sum() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(masks[2], OtsuPseudoMask(method, offset=0.5)(imgs[2]))


def test_subnormal_range_is_handled():
    """A range too small for 256 float32 bins (numpy.histogram raises there): finite masks, no crash."""
    img = np.zeros((1, 6, 6), np.float32)
    img[0, :3] = 1e-40  # subnormal step
    mask = OtsuPseudoMask()(img)
    assert np.isfinite(mask).all()
    np.testing.assert_array_equal(mask[0], img[0] > 0)


def test_errors():
    img = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="channel-first"):
        OtsuPseudoMask()(img[0])
    with pytest.raises(ValueError, match=r"channel-first \(B, C, H, W\)"):
        OtsuPseudoMask(batched=True)(img)
    with pytest.raises(ValueError, match=r"1 \(gray\) or 3 \(RGB\).*batched=True"):
        OtsuPseudoMask()(np.zeros((4, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="must not be empty"):
        OtsuPseudoMask()(np.zeros((1, 0, 8), np.float32))
    with pytest.raises(ValueError, match="finite"):
        OtsuPseudoMask()(np.full((1, 4, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="finite"):
        OtsuPseudoMask(method="adaptive_mean")(np.array([[[0.0, np.inf], [1.0, 2.0]]], np.float32))
    with pytest.raises(ValueError, match="method must be one of"):
        OtsuPseudoMask(method="triangle")
    with pytest.raises(ValueError, match="block_size must be an odd integer"):
        OtsuPseudoMask(method="adaptive_mean", block_size=10)
    with pytest.raises(ValueError, match="omega must be in"):
        OtsuPseudoMask(method="ght", omega=1.5)
    with pytest.raises(ValueError, match="nu must be >= 0"):
        OtsuPseudoMask(method="ght", nu=-1.0)


# ---------------------------------------------------------------- foreground polarity
def test_dark_foreground_is_skimage_on_the_inverted_image(radiographs):
    """``foreground="dark"`` is Otsu of the inverted image (skimage: ``inverted > threshold_otsu(inverted)``)."""
    for img in radiographs:
        gray = img.astype(np.float64)
        for inverted in (-gray, gray.max() - gray):
            ref = inverted > threshold_otsu(inverted)
            assert mask_agreement(OtsuPseudoMask(foreground="dark")(gray[None])[0], ref) == 1.0
    # default unchanged
    gray = radiographs[0].astype(np.float64)
    np.testing.assert_array_equal(OtsuPseudoMask()(gray[None]), OtsuPseudoMask(foreground="bright")(gray[None]))


def test_minority_foreground_picks_the_smaller_class_per_image():
    rng = np.random.default_rng(0)
    small_bright = rng.normal(0.2, 0.02, (32, 32))
    small_bright[:8, :8] = rng.normal(0.8, 0.02, (8, 8))  # 6 % bright object on a dark background
    small_dark = 1.0 - small_bright  # the same object, dark on a bright background (a skin lesion)
    batch = np.stack([small_bright, small_dark])[:, None]
    masks = OtsuPseudoMask(foreground="minority", batched=True)(batch)
    for m in masks:
        assert m[0, :8, :8].all() and m.sum() == 64
    bright = OtsuPseudoMask(batched=True)(batch)
    assert bright[0].sum() == 64 and bright[1].sum() == 32 * 32 - 64  # bright polarity takes the skin
    dark = OtsuPseudoMaskd("image", foreground="dark")({"image": small_dark[None]})["image_mask"]
    assert dark[0, :8, :8].all() and dark.sum() == 64


def test_foreground_is_checked():
    with pytest.raises(ValueError, match="foreground must be one of"):
        OtsuPseudoMask(foreground="lesion")
