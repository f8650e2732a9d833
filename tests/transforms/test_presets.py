"""Tests of the hand paper's per-view augmentation preset (ranges, reproducibility, types, configs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_osteo.transforms.presets import hand_view_augmentation, hand_view_augmentationd
from tests.utils import assert_allclose


def view(size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, size, size, generator=g) + 0.5


def test_affine_ranges_follow_the_paper():
    aug = hand_view_augmentation(40, flip_prob=0.0, brightness=(1, 1), contrast=(1, 1)).set_random_state(0)
    grid = aug.transforms[0].rand_affine_grid
    rot, trans = [], []
    for _ in range(200):
        aug(view(40))
        rot.append(grid.rotate_params[0])
        trans.append(grid.translate_params)
    rot, trans = np.degrees(rot), np.abs(np.array(trans))
    assert np.abs(rot).max() <= 30 and np.abs(rot).max() > 27  # ±30°, uniform
    assert trans.max() <= 4.0 and trans.max() > 3.6  # ±10% of 40 px, in pixels


def test_flips_brightness_contrast():
    x = view()
    flip = hand_view_augmentation(32, prob=0.0, flip_prob=1.0)
    assert_allclose(flip(x), torch.flip(x, dims=(1, 2)))
    bright = hand_view_augmentation(32, flip_prob=0.0, rotate_deg=0, translate_frac=0, contrast=(1, 1))
    bright.set_random_state(1)
    ratios = [float((bright(x) / x).mean()) for _ in range(100)]
    assert 0.5 <= min(ratios) < 0.6 and 1.4 < max(ratios) <= 1.5
    con = hand_view_augmentation(32, flip_prob=0.0, rotate_deg=0, translate_frac=0, brightness=(1, 1))
    con.set_random_state(2)
    for _ in range(20):
        y = con(x)
        assert_allclose(y.mean(), x.mean(), rtol=1e-5)
        assert 0.5 - 1e-5 <= float(y.std() / x.std()) <= 1.5 + 1e-5


def test_seeded_reproducibility_and_types():
    x = MetaTensor(view(), meta={"bone": "M2"})
    a, b = hand_view_augmentation(32), hand_view_augmentation(32)
    assert isinstance(a, Compose) and a.set_random_state(3) is a
    b.set_random_state(3)
    ya, yb = a(x), b(x)
    assert_allclose(ya, yb)
    assert isinstance(ya, MetaTensor) and ya.meta["bone"] == "M2" and ya.dtype == torch.float32
    assert ya.shape == x.shape
    assert a(x.as_tensor().double()).dtype == torch.float32  # MONAI's RandAffine resamples in float32
    b.set_random_state(4)
    assert not torch.equal(a(x), b(x))


def test_dict_preset_shares_geometry_across_keys():
    x = view()
    aug = hand_view_augmentationd(["image", "mask"], spatial_size=32, mode=["bilinear", "bilinear"])
    aug.set_random_state(5)
    for _ in range(5):
        d = aug({"image": x, "mask": 2 * x})
        # intensity changes touch only the image; undo them via the same geometry: mask / 2 is the geometry
        assert d["mask"].shape == d["image"].shape
        assert float(torch.corrcoef(torch.stack([d["image"].flatten(), d["mask"].flatten()]))[0, 1]) > 0.99


def test_config_and_errors():
    cfg = {"aug": {"_target_": "monai_osteo.transforms.presets.hand_view_augmentation", "spatial_size": 96}}
    aug = ConfigParser(cfg).get_parsed_content("aug")
    assert all(math.isclose(r, 9.6) for r in aug.transforms[0].rand_affine_grid.translate_range)
    with pytest.raises(ValueError, match="brightness must be"):
        hand_view_augmentation(brightness=(1.5, 0.5))
    with pytest.raises(ValueError, match="prob must be a probability"):
        hand_view_augmentation(prob=2)
    with pytest.raises(ValueError, match="spatial_size must be"):
        hand_view_augmentation(spatial_size=0)


def test_bone_patch_preprocessing_is_the_screening_resize(tmp_path):
    """Probe training/evaluation (dictionary path) and screening (array resize) resize a patch identically."""
    from monai_osteo.data.readers.patches import save_bone_patch as save
    from monai_osteo.transforms.presets import bone_patch_preprocessingd, bone_patch_resize

    patch = np.random.default_rng(0).random((1, 90, 90)).astype(np.float16)
    save(tmp_path / "p.npy", patch)
    out = bone_patch_preprocessingd("image", 32)({"image": str(tmp_path / "p.npy")})["image"]
    assert out.dtype == torch.float32 and tuple(out.shape) == (1, 32, 32) and not hasattr(out, "meta")
    assert_allclose(out, bone_patch_resize(32)(torch.from_numpy(patch.astype(np.float32))), atol=1e-6, rtol=0)


@pytest.mark.parametrize("normalization", [None, "bone_zscore"])
def test_bone_patch_normalization_is_shared_by_probe_and_screening(tmp_path, normalization):
    """Both paths apply the same normalisation before the same resize."""
    from monai_osteo.data.readers.patches import save_bone_patch as save
    from monai_osteo.transforms.presets import bone_patch_preprocessingd, bone_patch_resize

    patch = np.random.default_rng(1).random((1, 70, 70)).astype(np.float16)
    patch[:, :20] = 0
    save(tmp_path / "p.npy", patch)
    out = bone_patch_preprocessingd("image", 32, normalization)({"image": str(tmp_path / "p.npy")})["image"]
    ref = bone_patch_resize(32, normalization)(torch.from_numpy(patch.astype(np.float32)))
    assert_allclose(out, ref, atol=1e-5, rtol=0)


def test_bone_zscore_standardises_bone_pixels_and_removes_the_display_window():
    """Oracle: numpy z-score of the non-zero pixels; a per-image window (v -> a v + b on the bone) is removed."""
    from monai_osteo.transforms.presets import bone_patch_intensity, bone_patch_intensityd

    rng = np.random.default_rng(2)
    bone = rng.uniform(0.2, 0.9, size=(1, 40, 40)).astype(np.float32)
    bone[:, :, :12] = 0  # background
    m = bone != 0
    out = np.asarray(bone_patch_intensity("bone_zscore")(torch.from_numpy(bone)))
    expected = np.zeros_like(bone)
    expected[m] = (bone[m] - bone[m].mean()) / bone[m].std()
    assert_allclose(out, expected, atol=1e-5, rtol=0)
    assert (out[~m] == 0).all()
    windowed = np.where(m, 0.55 * bone + 0.2, 0).astype(np.float32)
    assert_allclose(np.asarray(bone_patch_intensity("bone_zscore")(torch.from_numpy(windowed))), out, atol=1e-4,
                    rtol=0)
    # None keeps the display values
    assert_allclose(np.asarray(bone_patch_intensity(None)(torch.from_numpy(bone))), bone, atol=0, rtol=0)
    d = bone_patch_intensityd("image", "bone_zscore")({"image": torch.from_numpy(bone)})["image"]
    assert_allclose(np.asarray(d), expected, atol=1e-5, rtol=0)
    for bad in ("zscore", "minmax"):
        with pytest.raises(ValueError, match="bone_zscore"):
            bone_patch_intensity(bad)
        with pytest.raises(ValueError, match="bone_zscore"):
            bone_patch_intensityd("image", bad)
