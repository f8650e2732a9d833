"""Tests of the SSL view transforms: texture-pool members (TP-SwAV) and random 3-D crops (crop-SwAV baseline)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.data import DataLoader, Dataset, MetaTensor
from scipy.stats import chisquare

from monai_osteo.transforms import RandCropViews3Dd, RandTexturePoolViewsd
from monai_osteo.transforms.texture import RandCropViews3DD, RandTexturePoolViewsDict
from tests.utils import assert_allclose

SHAPE = (6, 7, 8)


def make_pool(channels: int = 5, shape=SHAPE, seed: int = 0) -> torch.Tensor:
    """A (C, *shape) float32 pool whose channels differ everywhere (random values, offset by the channel)."""
    g = torch.Generator().manual_seed(seed)
    offset = torch.arange(channels, dtype=torch.float32).view(-1, *([1] * len(shape)))
    return torch.rand((channels, *shape), generator=g) + offset


def member_index(view: torch.Tensor, pool: torch.Tensor) -> int:
    """The pool channel equal to ``view`` (exactly); fails unless exactly one matches."""
    hits = [c for c in range(pool.shape[0]) if torch.equal(view[0], pool[c])]
    assert len(hits) == 1, hits
    return hits[0]


# ---------------------------------------------------------------- texture-pool views


def test_pool_views_are_distinct_members_and_channels_match():
    pool = MetaTensor(make_pool())
    t = RandTexturePoolViewsd("pool", "views", num_views=3, flip_prob=0.0, max_shift=0).set_random_state(0)
    for _ in range(30):
        d = t({"pool": pool, "other": 1})
        views, chans = d["views"], d["views_channels"]
        assert d["pool"] is pool and d["other"] == 1  # source and other entries kept
        assert isinstance(views, list) and len(views) == 3
        for v in views:
            assert type(v) is torch.Tensor and v.shape == (1, *SHAPE) and v.dtype == torch.float32
        drawn = [member_index(v, pool.as_tensor()) for v in views]
        assert len(set(drawn)) == 3
        assert chans.dtype == torch.long and chans.tolist() == drawn
        views[0].add_(100.0)  # views own their memory
        assert pool.max() < 5


def test_pool_views_accept_numpy_and_keep_float64():
    pool = make_pool(3).double().numpy()
    d = RandTexturePoolViewsd("x", "v", flip_prob=0.0).set_random_state(1)({"x": pool})
    assert all(type(v) is torch.Tensor and v.dtype == torch.float64 for v in d["v"])
    for v, c in zip(d["v"], d["v_channels"]):
        assert np.array_equal(v[0].numpy(), pool[int(c)])


def test_pool_channel_draws_are_uniform():
    c, v, n = 5, 2, 2000
    t = RandTexturePoolViewsd("pool", num_views=v, flip_prob=0.0).set_random_state(123)
    data = {"pool": torch.zeros(c, 1, 1, 1)}
    draws = np.stack([t(data)["image_global_channels"].numpy() for _ in range(n)])
    assert all(len(set(row)) == v for row in draws)
    counts = np.bincount(draws.ravel(), minlength=c)
    assert np.all(np.abs(counts / (n * v) - 1 / c) < 0.15 / c)
    assert chisquare(counts).pvalue > 1e-3
    # ordered pairs uniform as well: each of the c * (c - 1) occurs
    pairs = np.bincount(draws[:, 0] * c + draws[:, 1], minlength=c * c).reshape(c, c)
    assert np.all(np.diag(pairs) == 0)
    assert chisquare(pairs[~np.eye(c, dtype=bool)]).pvalue > 1e-3


@pytest.mark.parametrize("axis", [0, 1, 2, (0, 2)])
def test_pool_flip_is_torch_flip_of_a_member(axis):
    pool = make_pool()
    t = RandTexturePoolViewsd("pool", num_views=2, flip_prob=1.0, spatial_axis=axis).set_random_state(3)
    d = t({"pool": pool})
    dims = [a + 1 for a in (axis if isinstance(axis, tuple) else (axis,))]
    for view, c in zip(d["image_global"], d["image_global_channels"]):
        assert torch.equal(view, torch.flip(pool[int(c) : int(c) + 1], dims))


def test_pool_flip_probability():
    t = RandTexturePoolViewsd("pool", num_views=2, flip_prob=0.3, spatial_axis=0).set_random_state(5)
    pool = make_pool(2)
    flips = []
    for _ in range(400):
        d = t({"pool": pool})
        for view, c in zip(d["image_global"], d["image_global_channels"]):
            flips.append(not torch.equal(view[0], pool[int(c)]))
    assert abs(np.mean(flips) - 0.3) < 0.06


def test_pool_shift_is_replicate_padded_translation():
    max_shift = 2
    pool = make_pool()
    t = RandTexturePoolViewsd("pool", num_views=2, flip_prob=0.0, max_shift=max_shift).set_random_state(11)
    seen = set()
    for _ in range(15):
        d = t({"pool": pool})
        for view, c in zip(d["image_global"], d["image_global_channels"]):
            src = pool[int(c)].numpy()
            padded = np.pad(src, max_shift, mode="edge")  # oracle: edge padding, then a window
            matches = []
            for s in itertools.product(range(-max_shift, max_shift + 1), repeat=3):
                window = tuple(slice(max_shift - si, max_shift - si + n) for si, n in zip(s, SHAPE))
                if np.array_equal(view[0].numpy(), padded[window]):
                    matches.append(s)
            assert len(matches) == 1, matches
            s = matches[0]
            # interior: a plain translation (np.roll) away from the replicated border
            inner = tuple(slice(max_shift, n - max_shift) for n in SHAPE)
            assert np.array_equal(view[0].numpy()[inner], np.roll(src, s, axis=(0, 1, 2))[inner])
            seen.add(s)
    assert len(seen) > 10  # shifts vary, independently per view
    assert any(0 not in s for s in seen)


def test_pool_views_seeded():
    pool = make_pool()
    kw = {"num_views": 3, "flip_prob": 0.5, "max_shift": 1}
    a = RandTexturePoolViewsd("pool", **kw)
    assert a.set_random_state(42) is a
    b = RandTexturePoolViewsDict("pool", **kw).set_random_state(42)
    for _ in range(5):
        da, db = a({"pool": pool}), b({"pool": pool})
        assert torch.equal(da["image_global_channels"], db["image_global_channels"])
        for x, y in zip(da["image_global"], db["image_global"]):
            assert torch.equal(x, y)
    c = RandTexturePoolViewsd("pool", **kw).set_random_state(43)
    outs = [torch.stack(c({"pool": pool})["image_global"]) for _ in range(5)]
    a.set_random_state(42)
    assert not all(torch.equal(torch.stack(a({"pool": pool})["image_global"]), o) for o in outs)


def test_pool_views_errors():
    with pytest.raises(ValueError, match=r"C = 3"):
        RandTexturePoolViewsd("pool", num_views=4)({"pool": make_pool(3)})
    with pytest.raises(ValueError, match="num_views must be an integer >= 2"):
        RandTexturePoolViewsd("pool", num_views=1)
    with pytest.raises(ValueError, match="flip_prob"):
        RandTexturePoolViewsd("pool", flip_prob=1.5)
    with pytest.raises(ValueError, match="max_shift"):
        RandTexturePoolViewsd("pool", max_shift=-1)
    with pytest.raises(ValueError, match="max_shift must give one value"):
        RandTexturePoolViewsd("pool", max_shift=(1, 2))({"pool": make_pool()})
    with pytest.raises(ValueError, match="spatial_axis"):
        RandTexturePoolViewsd("pool", spatial_axis=3)({"pool": make_pool()})
    with pytest.raises(ValueError, match="output_key"):
        RandTexturePoolViewsd(("a", "b"), output_key="v")
    assert RandTexturePoolViewsd("pool", allow_missing_keys=True)({"x": 1}) == {"x": 1}


def test_pool_views_collate_in_monai_dataloader():
    items = [{"image": MetaTensor(make_pool(seed=i)), "id": i} for i in range(6)]
    t = RandTexturePoolViewsd("image", num_views=3, max_shift=1).set_random_state(0)
    loader = DataLoader(Dataset(items, transform=t), batch_size=3, num_workers=0)
    batches = list(loader)
    assert len(batches) == 2
    for batch in batches:
        views = batch["image_global"]
        assert isinstance(views, list) and len(views) == 3
        assert all(v.shape == (3, 1, *SHAPE) for v in views)
        assert batch["image_global_channels"].shape == (3, 3)
        assert batch["image"].shape == (3, 5, *SHAPE)


# ---------------------------------------------------------------- crop-SwAV baseline views


def test_crop_views_shapes_and_counts():
    vol = make_pool(2, shape=(16, 12, 9))
    d = RandCropViews3Dd("image").set_random_state(0)({"image": vol})
    assert d["image"] is vol
    assert len(d["image_global"]) == 2 and len(d["image_local"]) == 4
    assert all(type(v) is torch.Tensor and v.shape == (1, 16, 12, 9) for v in d["image_global"])
    assert all(v.shape == (1, 8, 6, 4) for v in d["image_local"])  # half, rounded down, at least 4
    d = RandCropViews3DD("image", "g", "l", num_global=3, num_local=0, global_size=10, local_size=(5, 6, 7))(
        {"image": vol}
    )
    assert len(d["g"]) == 3 and all(v.shape == (1, 10, 10, 10) for v in d["g"]) and "l" not in d
    d = RandCropViews3Dd("image", num_local=2, local_size=(5, 6, 7))({"image": vol.numpy().astype(np.int16)})
    assert all(v.shape == (1, 5, 6, 7) and v.is_floating_point() for v in d["image_local"])


def test_crop_full_scale_is_identity():
    vol = make_pool(2, shape=(10, 9, 8))
    t = RandCropViews3Dd(
        "image", channel=1, global_scale=(1.0, 1.0), local_scale=(1.0, 1.0), local_size=(5, 4, 4),
        flip_prob=0.0, intensity_scale=0.0, intensity_shift=0.0,
    ).set_random_state(0)
    d = t({"image": MetaTensor(vol)})
    for v in d["image_global"]:
        assert type(v) is torch.Tensor
        assert_allclose(v, vol[1:2], atol=1e-6)
    expected = F.interpolate(vol[None, 1:2], size=(5, 4, 4), mode="trilinear", align_corners=False)[0]
    for v in d["image_local"]:
        assert_allclose(v, expected, atol=1e-6)
    flipped = RandCropViews3Dd("image", global_scale=(1.0, 1.0), num_local=0, flip_prob=1.0, spatial_axis=2,
                               intensity_scale=0.0, intensity_shift=0.0)({"image": vol})
    assert_allclose(flipped["image_global"][0], torch.flip(vol[:1], [3]), atol=1e-6)


def test_crop_boxes_have_the_volume_fraction_and_fit():
    shape = (40, 36, 32)
    t = RandCropViews3Dd("image", num_global=2, num_local=4).set_random_state(7)
    n = np.prod(shape)
    for _ in range(50):
        t.randomize(shape)
        for v, (start, size, _, _, _) in enumerate(t._draws):
            lo, hi = t.global_scale if v < 2 else t.local_scale
            frac = np.prod(size) / n
            assert lo * 0.85 <= frac <= hi * 1.15, (v, size, frac)
            assert all(0 <= s and s + k <= m for s, k, m in zip(start, size, shape))


def test_crop_intensities_within_bounds():
    s, b = 0.1, 0.1
    const = RandCropViews3Dd("image", num_local=3, intensity_scale=s, intensity_shift=b).set_random_state(1)
    values = []
    for _ in range(20):
        d = const({"image": torch.full((1, 8, 8, 8), 2.0)})
        for v in d["image_global"] + d["image_local"]:
            assert_allclose(v, torch.full_like(v, float(v.flatten()[0])), atol=1e-6)  # constant stays constant
            values.append(float(v.flatten()[0]))
    assert 2 * (1 - s) - b <= min(values) and max(values) <= 2 * (1 + s) + b
    assert np.std(values) > 0.02  # the jitter does happen
    vol = make_pool(1, shape=(12, 12, 12)) + 1.0  # in [1, 2]
    d = RandCropViews3Dd("image", intensity_scale=s, intensity_shift=b).set_random_state(2)({"image": vol})
    for v in d["image_global"] + d["image_local"]:
        assert v.min() >= 1.0 * (1 - s) - b - 1e-6 and v.max() <= 2.0 * (1 + s) + b + 1e-6


def test_crop_views_seeded():
    vol = make_pool(1, shape=(12, 10, 8))
    a = RandCropViews3Dd("image").set_random_state(9)
    b = RandCropViews3Dd("image").set_random_state(9)
    for _ in range(3):
        da, db = a({"image": vol}), b({"image": vol})
        for x, y in zip(da["image_global"] + da["image_local"], db["image_global"] + db["image_local"]):
            assert torch.equal(x, y)
    c = RandCropViews3Dd("image").set_random_state(10)({"image": vol})
    assert not torch.equal(c["image_global"][0], a.set_random_state(9)({"image": vol})["image_global"][0])


def test_crop_views_errors():
    with pytest.raises(ValueError, match="global_scale"):
        RandCropViews3Dd("image", global_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="local_size"):
        RandCropViews3Dd("image", local_size=(4, 4))
    with pytest.raises(ValueError, match="num_global"):
        RandCropViews3Dd("image", num_global=0)
    with pytest.raises(ValueError, match="must differ"):
        RandCropViews3Dd("image", global_key="v", local_key="v")
    with pytest.raises(ValueError, match=r"\(C, D, H, W\)"):
        RandCropViews3Dd("image")({"image": torch.zeros(1, 8, 8)})
    with pytest.raises(ValueError, match="channel 2"):
        RandCropViews3Dd("image", channel=2)({"image": torch.zeros(2, 8, 8, 8)})


def test_views_build_from_bundle_config():
    from monai.bundle import ConfigParser

    pool_views = ConfigParser(
        {"_target_": "monai_osteo.transforms.RandTexturePoolViewsd", "keys": "image", "max_shift": 2,
         "spatial_axis": [0]}
    ).get_parsed_content()
    crops = ConfigParser(
        {"_target_": "monai_osteo.transforms.texture.views.RandCropViews3Dd", "keys": "image",
         "global_scale": [0.14, 1.0], "local_size": [4, 4, 4]}
    ).get_parsed_content()
    d = crops(pool_views({"image": make_pool()}))
    assert len(d["image_global"]) == 2 and len(d["image_local"]) == 4  # crop views replace the pool views
