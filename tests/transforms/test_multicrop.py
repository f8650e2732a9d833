"""Tests of the constrained multi-crop family against brute force, rejection sampling and torchvision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset, MetaTensor, set_track_meta
from scipy.stats import ks_2samp
from torchvision.transforms import RandomResizedCrop

from monai_osteo.transforms.multicrop import (
    RandConstrainedMultiCrop,
    RandConstrainedMultiCropd,
    sample_windows,
    summed_area_table,
    window_fraction_map,
    window_fractions,
    window_sums,
)
from monai_osteo.transforms.presets import hand_view_augmentation, hand_view_augmentationd
from tests.utils import assert_allclose

SMALL = {"global_size": 48, "local_size": 24}  # small outputs keep the tests fast; sampling is unchanged


def bone_patch(size=(120, 100), half_width=8.0, angle=0.6, seed=0, channels=1):
    """A textured tapered tube (bone-like) at ``angle`` in a zero patch, float32 (C, H, W)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: size[0], : size[1]].astype(np.float64)
    yy, xx = yy - size[0] / 2, xx - size[1] / 2
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    length = 0.45 * min(size)
    mask = (np.abs(u) < length) & (np.abs(v) < half_width * (1 - 0.4 * u / length))
    img = mask * (0.3 + 0.7 * rng.random(size))
    return np.repeat(img[None], channels, 0).astype(np.float32)


def brute_fraction(mask, window):
    top, left, h, w = (int(x) for x in window)
    return float((mask[top : top + h, left : left + w] != 0).sum()) / (h * w)


# ---------------------------------------------------------------- functional oracles


def test_summed_area_table_equals_brute_force_window_sums():
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) < 0.3
    sat = summed_area_table(mask)
    h, w = rng.integers(1, 38, 500), rng.integers(1, 54, 500)
    windows = np.stack([rng.integers(0, 38 - h), rng.integers(0, 54 - w), h, w], 1)
    brute = np.array([mask[y : y + hh, x : x + ww].sum() for y, x, hh, ww in windows])
    assert np.array_equal(window_sums(sat, windows), brute)
    sat_t = summed_area_table(torch.from_numpy(mask))
    assert np.array_equal(window_sums(sat_t, torch.from_numpy(windows)).numpy(), brute)
    assert_allclose(window_fractions(sat_t, windows), brute / (h * w))
    fmap = window_fraction_map(sat, 7, 11)
    assert fmap.shape == (31, 43)
    assert fmap[5, 9] == brute_fraction(mask, (5, 9, 7, 11)) and fmap[-1, -1] == brute_fraction(mask, (30, 42, 7, 11))
    with pytest.raises(ValueError, match="mask must be 2-D"):
        summed_area_table(mask[None])


def naive_rejection(mask, n, scale, ratio, min_fg, seed):
    """The paper's method: torchvision proposals, fraction by summing the crop, accept if >= min_fg."""
    torch.manual_seed(seed)
    ref = torch.zeros(1, *mask.shape)
    out, tries = [], []
    for _ in range(n):
        k = 0
        while True:
            k += 1
            win = RandomResizedCrop.get_params(ref, list(scale), list(ratio))
            if brute_fraction(mask, win) >= min_fg:
                break
        out.append(win)
        tries.append(k)
    return np.array(out), np.array(tries)


@pytest.mark.parametrize("scale, half_width", [((0.05, 0.14), 5.0), ((0.14, 1.0), 2.5)])
def test_distribution_matches_rejection_sampling(scale, half_width):
    mask = bone_patch((90, 80), half_width=half_width)[0] != 0  # 4-8% foreground: the constraint bites
    ratio, n = (3 / 4, 4 / 3), 1500
    ref, ref_tries = naive_rejection(mask, n, scale, ratio, 0.1, seed=1)
    rng = np.random.RandomState(2)
    parts = [sample_windows(summed_area_table(mask), 4, scale, ratio, 0.1, rng) for _ in range(n // 4)]
    ours = np.concatenate([p.windows for p in parts])
    tries = np.concatenate([p.tries for p in parts])
    assert all(p.constraint_met.all() for p in parts)
    for k, name in enumerate(["top", "left", "height", "width"]):
        a, b = ours[:, k].astype(float), ref[:, k].astype(float)
        se = np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4.5 * se, name
        assert ks_2samp(a, b).pvalue > 1e-3, name
    se = np.sqrt(tries.var() / len(tries) + ref_tries.var() / len(ref_tries))
    assert abs(tries.mean() - ref_tries.mean()) < 4.5 * se
    assert ref_tries.mean() > 1.5  # the test is informative: many proposals are rejected


def test_unconstrained_matches_torchvision_proposal():
    mask = bone_patch((90, 80), half_width=5.0)[0] != 0
    scale, ratio, n = (0.05, 0.14), (3 / 4, 4 / 3), 1500
    ref, _ = naive_rejection(mask, n, scale, ratio, 0.0, seed=3)
    s = sample_windows(summed_area_table(mask), n, scale, ratio, 0.0, np.random.RandomState(4))
    assert s.constraint_met.all() and (s.tries == 1).all()
    for k in range(4):
        assert ks_2samp(s.windows[:, k], ref[:, k]).pvalue > 1e-3
    assert_allclose(s.fractions, [brute_fraction(mask, w) for w in s.windows])
    assert (s.fractions < 0.1).mean() > 0.2  # conventional multi-crop misses the bone often


# ---------------------------------------------------------------- array transform


@pytest.mark.parametrize("half_width", [3.0, 6.0, 15.0])
def test_every_view_meets_threshold(half_width):
    img = bone_patch(half_width=half_width, seed=int(half_width))
    fg = img[0] != 0
    t = RandConstrainedMultiCrop(**SMALL).set_random_state(5)
    for _ in range(20):
        views = t(img)
        assert len(views) == 6 and [v.shape for v in views] == [(1, 48, 48)] * 2 + [(1, 24, 24)] * 4
        s = t.sample
        assert s.constraint_met.all()
        brute = [brute_fraction(fg, w) for w in s.windows]
        assert_allclose(s.fractions, brute)
        assert min(brute) >= 0.1
        assert (s.windows[:, 2:] >= 1).all() and (s.windows[:, :2] + s.windows[:, 2:] <= fg.shape).all()


def test_infeasible_sizes_take_best_window_and_flag():
    img = np.zeros((1, 100, 100), np.float32)
    img[0, 40:44, 50:54] = 1.0  # 16 pixels: no local window (>= 500 px) can hold 10%
    t = RandConstrainedMultiCrop(**SMALL, max_candidates=256).set_random_state(0)
    t(img)
    s = t.sample
    assert not s.constraint_met.any()
    for w, f in zip(s.windows, s.fractions):
        assert f == window_fraction_map(summed_area_table(img[0]), int(w[2]), int(w[3])).max()
        assert f == brute_fraction(img[0], w) and f > 0
    assert (s.tries > 0).all()


def test_exhaustive_fallback_finds_rare_feasible_windows():
    mask = bone_patch((120, 100), half_width=2.0)[0] != 0  # feasible local windows are rare
    rng = np.random.RandomState(0)
    s = sample_windows(summed_area_table(mask), 4, (0.05, 0.14), (3 / 4, 4 / 3), 0.1, rng, 1, 1)
    assert s.constraint_met.all()
    assert min(brute_fraction(mask, w) for w in s.windows) >= 0.1


def test_all_zero_patch_is_flagged_not_looped():
    t = RandConstrainedMultiCrop(**SMALL).set_random_state(0)
    img = MetaTensor(torch.zeros(1, 64, 80))
    views = t(img)
    assert not t.sample.constraint_met.any() and (t.sample.fractions == 0).all()
    assert (t.sample.tries <= t.num_candidates).all()
    assert all(not v.meta["multicrop_constraint_met"] for v in views)
    assert len({tuple(w) for w in t.sample.windows}) > 1  # positions stay random


def test_unconstrained_variant_for_ablation():
    img = bone_patch(half_width=3.0)
    t = RandConstrainedMultiCrop(**SMALL, min_foreground=0.0).set_random_state(0)
    fr = np.concatenate([t(img) and t.sample.fractions for _ in range(30)])
    assert (fr < 0.1).mean() > 0.2 and (t.sample.tries == 1).all()


def test_seeded_reproducibility_reaches_view_transforms():
    img = torch.from_numpy(bone_patch())

    def make():
        return RandConstrainedMultiCrop(
            **SMALL, view_transform=hand_view_augmentation(48), local_view_transform=hand_view_augmentation(24)
        )

    a, b = make(), make()
    assert a.set_random_state(7) is a
    b.set_random_state(7)
    for _ in range(2):
        for va, vb in zip(a(img), b(img)):
            assert_allclose(va, vb)
    b.set_random_state(8)
    assert not all(torch.equal(va, vb) for va, vb in zip(a(img), b(img)))
    # same windows, different view draws: the seed reaches the inner preset and each view draws anew
    c = RandConstrainedMultiCrop(**SMALL, min_foreground=0.0, view_transform=hand_view_augmentation(48, prob=1.0))
    c.set_random_state(0)
    same = torch.ones(1, 60, 60)
    views = c(same)
    assert not torch.equal(views[0], views[1])


def test_types_dtypes_meta_preserved():
    base = bone_patch(channels=2)
    t = RandConstrainedMultiCrop(**SMALL).set_random_state(0)
    out = t(base)
    assert isinstance(out[0], np.ndarray) and out[0].dtype == np.float32 and out[0].shape == (2, 48, 48)
    out = t(torch.from_numpy(base).double())
    assert type(out[0]) is torch.Tensor and out[0].dtype == torch.float64
    u8 = (base * 255).astype(np.uint8)
    out = t(torch.from_numpy(u8))
    assert out[0].dtype == torch.uint8 and int(out[0].max()) <= 255
    mt = MetaTensor(torch.from_numpy(base), meta={"filename_or_obj": "ulna.png", "bone": "ulna"})
    out = t(mt)
    for v, view in enumerate(out):
        assert isinstance(view, MetaTensor) and view.meta["bone"] == "ulna"
        top, left, h, w = t.sample.windows[v]
        assert view.meta["multicrop_view"] == ("global" if v < 2 else "local")
        assert view.meta["multicrop_foreground_fraction"] == t.sample.fractions[v]
        size = view.shape[1]
        # output pixel 0 centre maps to source coordinate top + (0.5 * h / size - 0.5)
        assert_allclose(view.affine[0, 0], h / size, rtol=1e-6)
        assert_allclose(view.affine[:2, -1], [top + 0.5 * h / size - 0.5, left + 0.5 * w / size - 0.5], rtol=1e-6)
    assert mt.meta.get("multicrop_view") is None  # input untouched
    set_track_meta(False)
    try:
        assert type(t(mt)[0]) is torch.Tensor
    finally:
        set_track_meta(True)


def test_crop_content_is_the_source_window():
    img = torch.arange(60 * 70, dtype=torch.float32).reshape(1, 60, 70)
    t = RandConstrainedMultiCrop(global_size=10, local_size=5, min_foreground=0.0, mode="nearest")
    t.set_random_state(3)
    views = t(img)
    for view, (top, left, h, w) in zip(views, t.sample.windows):
        assert view.min() >= img[0, top, left] and view.max() <= img[0, top + h - 1, left + w - 1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_preserved():
    img = torch.from_numpy(bone_patch()).cuda()
    views = RandConstrainedMultiCrop(**SMALL).set_random_state(0)(img)
    assert all(v.device == img.device for v in views)


def test_errors():
    t = RandConstrainedMultiCrop(**SMALL)
    with pytest.raises(ValueError, match=r"img must be channel-first 2-D \(C, H, W\)"):
        t(np.ones((10, 10)))
    with pytest.raises(ValueError, match="channel-first 2-D"):
        t(np.ones((1, 10, 10, 10)))
    with pytest.raises(ValueError, match="must be non-empty"):
        t(np.ones((1, 0, 10)))
    with pytest.raises(ValueError, match="mask must have the spatial shape"):
        t(np.ones((1, 10, 10)), mask=np.ones((1, 10, 12)))
    with pytest.raises(ValueError, match="min_foreground must be in"):
        RandConstrainedMultiCrop(min_foreground=10)
    with pytest.raises(ValueError, match="local_scale must be a"):
        RandConstrainedMultiCrop(local_scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="global_size must be"):
        RandConstrainedMultiCrop(global_size=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        RandConstrainedMultiCrop(mode="cubic")
    t(np.ones((1, 30, 30)))
    with pytest.raises(ValueError, match="img must contain the windows"):
        t(np.ones((1, 10, 10)), randomize=False)
    with pytest.raises(ValueError, match="call the transform"):
        RandConstrainedMultiCrop().crop_views(np.ones((1, 10, 10)))


# ---------------------------------------------------------------- dictionary transform, batching, configs


def test_array_and_dict_agree_under_same_seed():
    img = MetaTensor(torch.from_numpy(bone_patch()))
    arr = RandConstrainedMultiCrop(**SMALL).set_random_state(11)
    dct = RandConstrainedMultiCropd("image", **SMALL, info_key="info").set_random_state(11)
    for _ in range(3):
        a = arr(img)
        d = dct({"image": img, "label": 1})
        assert "image" not in d and d["label"] == 1
        for va, vd in zip(a, d["image_global"] + d["image_local"]):
            assert_allclose(va, vd)
        assert np.array_equal(d["info"]["window"], arr.sample.windows)


def test_dict_shares_windows_across_keys_and_mask_key():
    img = bone_patch()
    mask = (img != 0).astype(np.float32)
    t = RandConstrainedMultiCropd(
        ["image", "mask"], mask_key="mask", mode=["bilinear", "nearest"], keep_source=True, **SMALL
    ).set_random_state(0)
    d = t({"image": img, "mask": mask})
    assert "image" in d
    for vi, vm in zip(d["image_global"] + d["image_local"], d["mask_global"] + d["mask_local"]):
        assert set(np.unique(vm)) <= {0.0, 1.0}
        assert vm.mean() >= 0.05 and (vi[vm == 1] > 0).mean() > 0.9
    with pytest.raises(ValueError, match="spatial shape"):
        t({"image": img, "mask": mask[:, :10]})
    with pytest.raises(ValueError, match="mask_key must name"):
        RandConstrainedMultiCropd("image", mask_key="seg")({"image": img})


def test_dict_view_transform_pairs_keys():
    img = bone_patch()
    aug = hand_view_augmentationd(["image", "twice"], spatial_size=48, brightness=(1, 1), contrast=(1, 1))
    t = RandConstrainedMultiCropd(["image", "twice"], **SMALL, num_local=0, view_transform=aug)
    d = t.set_random_state(2)({"image": img, "twice": 2 * img})
    for a, b in zip(d["image_global"], d["twice_global"]):
        assert_allclose(2 * a, b, atol=1e-5)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_batches_multi_view_lists(num_workers):
    rng = np.random.default_rng(0)
    data = [
        {"image": MetaTensor(torch.from_numpy(bone_patch((int(rng.integers(110, 160)), 120), seed=i))), "y": i}
        for i in range(6)
    ]
    t = RandConstrainedMultiCropd(
        "image",
        info_key="info",
        view_transform=hand_view_augmentationd("image", spatial_size=224),
        local_view_transform=hand_view_augmentationd("image", spatial_size=96),
    )
    loader = DataLoader(Dataset(data, transform=t), batch_size=3, num_workers=num_workers)
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert [tuple(x.shape) for x in b["image_global"]] == [(3, 1, 224, 224)] * 2
    assert [tuple(x.shape) for x in b["image_local"]] == [(3, 1, 96, 96)] * 4
    assert tuple(b["info"]["window"].shape) == (3, 6, 4) and bool(b["info"]["constraint_met"].all())
    assert b["y"].tolist() == [0, 1, 2]
    default = torch.utils.data.default_collate([t(data[0]), t(data[1])])
    assert [tuple(x.shape) for x in default["image_local"]] == [(2, 1, 96, 96)] * 4


def test_built_from_bundle_config():
    config = {
        "crop": {
            "_target_": "monai_osteo.transforms.multicrop.RandConstrainedMultiCropd",
            "keys": "image",
            "global_size": 48,
            "local_size": 24,
            "min_foreground": 0.1,
            "view_transform": {
                "_target_": "monai_osteo.transforms.presets.hand_view_augmentationd",
                "keys": "image",
                "spatial_size": 48,
            },
            "local_view_transform": {
                "_target_": "monai_osteo.transforms.presets.hand_view_augmentationd",
                "keys": "image",
                "spatial_size": 24,
            },
        }
    }
    t = ConfigParser(config).get_parsed_content("crop")
    assert isinstance(t, RandConstrainedMultiCropd)
    d = t.set_random_state(0)({"image": bone_patch()})
    assert len(d["image_global"]) == 2 and d["image_local"][0].shape == (1, 24, 24)
