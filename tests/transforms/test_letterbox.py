"""Letterbox: equal to the older pad-then-area-resize of segment.py; invertible (Invertd); the crop to the window."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import Invertd

from monai_osteo.engines.hand_osteo.segment import letterbox, segment_radiograph
from monai_osteo.transforms.letterbox import (
    CropLetterbox,
    CropLetterboxd,
    Letterbox,
    Letterboxd,
    letterbox_padding,
    letterbox_window,
)
from tests.utils import assert_allclose

SIZE = (32, 24)
# tall (pad the width), wide (pad the height), odd paddings, matching ratio (exact and within one pixel), upsampling
SHAPES = [(1, 90, 30), (2, 20, 70), (1, 37, 91), (3, 61, 20), (1, 64, 48), (1, 65, 48), (1, 32, 24), (1, 10, 6)]


def _window_crop(pred, window):
    """The crop of ``segment_radiograph`` (window fractions of the letterboxed grid, rounded)."""
    h, w = pred.shape[-2:]
    r0, r1, c0, c1 = (round(v) for v in (window[0] * h, window[1] * h, window[2] * w, window[3] * w))
    return pred[..., r0:r1, c0:c1]


@pytest.mark.parametrize("shape", SHAPES)
def test_letterbox_equals_pad_then_area_interpolate(shape):
    image = torch.rand(shape, generator=torch.Generator().manual_seed(0)) + 0.5
    out = Letterbox(SIZE, mode="area")(image)
    padded, window = letterbox(image, SIZE[0] / SIZE[1])
    expected = F.interpolate(padded[None], size=SIZE, mode="area")[0]
    assert isinstance(out, MetaTensor) and tuple(out.shape) == (shape[0], *SIZE)
    assert torch.equal(out.as_tensor(), expected)
    assert letterbox_window(out) == window


@pytest.mark.parametrize("shape", SHAPES)
def test_letterbox_padding_matches_segment_letterbox(shape):
    image = torch.ones(shape)
    padded, _ = letterbox(image, SIZE[0] / SIZE[1])
    (top, bottom), (left, right) = letterbox_padding(shape[1:], SIZE[0] / SIZE[1])
    assert (shape[1] + top + bottom, shape[2] + left + right) == tuple(padded.shape[-2:])
    assert min(top, bottom, left, right) >= 0 and (top + bottom == 0 or left + right == 0)  # one axis only
    assert bottom - top in (0, 1) and right - left in (0, 1)  # centred; the odd pixel bottom/right
    assert padded[:, top:top + shape[1], left:left + shape[2]].sum() == image.sum() == padded.sum()


def test_letterbox_padding_example_and_errors():
    assert letterbox_padding((300, 100), 64 / 48) == [(0, 0), (62, 63)]
    assert letterbox_padding((60, 40), 1.5) == [(0, 0), (0, 0)]
    with pytest.raises(ValueError, match="shape must be positive and ratio > 0"):
        letterbox_padding((0, 5), 1.0)
    with pytest.raises(ValueError, match="shape must be positive and ratio > 0"):
        letterbox_padding((5, 5), 0.0)


def test_letterboxd_matches_array_and_keeps_label_integer():
    g = torch.Generator().manual_seed(1)
    image = torch.rand((1, 45, 20), generator=g)
    label = torch.randint(0, 5, (1, 45, 20), generator=g)
    t = Letterboxd(["image", "label"], SIZE, mode=["area", "nearest-exact"])
    d = t({"image": image, "label": label, "other": 3})
    assert d["other"] == 3
    assert torch.equal(d["image"].as_tensor(), Letterbox(SIZE, "area")(image).as_tensor())
    assert torch.equal(d["label"].as_tensor(), Letterbox(SIZE, "nearest-exact")(label).as_tensor())
    lab = d["label"].as_tensor()
    assert tuple(lab.shape) == (1, *SIZE)
    assert torch.equal(lab, lab.round()) and set(lab.unique().tolist()) <= set(label.unique().tolist()) | {0}
    assert not torch.equal(d["image"].as_tensor(), d["image"].as_tensor().round())  # the image is interpolated


@pytest.mark.parametrize("shape", [(1, 90, 30), (2, 20, 70), (1, 32, 24)])
def test_letterbox_inverse_restores_shape(shape):
    t = Letterbox(SIZE)
    out = t.inverse(t(torch.rand(shape)))
    assert tuple(out.shape) == shape
    assert out.applied_operations == []


@pytest.mark.parametrize("shape, size", [((1, 10, 6), (40, 32)), ((1, 8, 8), (24, 24)), ((2, 12, 3), (36, 27)),
                                         ((1, 3, 12), (24, 48))])
def test_invertd_upsampled_label_map_reproduces_labels(shape, size):
    """Integer upsampling factors: inverting with the image's trace and ``nearest_interp`` is exact."""
    g = torch.Generator().manual_seed(2)
    image = torch.rand(shape, generator=g)
    label = torch.randint(1, 6, shape, generator=g).float()
    t = Letterboxd(["image", "label"], size, mode=["area", "nearest-exact"])
    d = t({"image": image, "label": label})
    d["pred"] = MetaTensor(d["label"].as_tensor().clone())  # a prediction on the letterboxed grid, no trace
    inv = Invertd(keys="pred", transform=t, orig_keys="image", nearest_interp=True)(d)
    assert tuple(inv["pred"].shape) == shape
    assert torch.equal(inv["pred"].as_tensor(), label)
    back = t.inverse(d)  # each key's own trace
    assert tuple(back["image"].shape) == shape and torch.equal(back["label"].as_tensor(), label)


@pytest.mark.parametrize("shape, size", [((1, 7, 13), (40, 40)), ((1, 23, 11), (50, 37)), ((1, 5, 9), (32, 24))])
def test_inverse_with_nearest_exact_trace_any_upsampling(shape, size):
    """Non-integer factors: the label's own nearest-exact trace inverts an upsampled label map exactly."""
    label = torch.randint(0, 9, shape, generator=torch.Generator().manual_seed(3)).float()
    t = Letterboxd(["image", "label"], size, mode=["area", "nearest-exact"])
    d = t({"image": torch.rand(shape), "label": label})
    d["pred"] = MetaTensor(d["label"].as_tensor().clone())
    inv = Invertd(keys="pred", transform=t, orig_keys="label", nearest_interp=False)(d)
    assert torch.equal(inv["pred"].as_tensor(), label)
    assert torch.equal(t.inverse(d)["label"].as_tensor(), label)


@pytest.mark.parametrize("shape", SHAPES)
def test_crop_letterbox_same_window_as_segment(shape):
    image = torch.rand(shape)
    ref = Letterbox(SIZE)(image)
    _, window = letterbox(image, SIZE[0] / SIZE[1])
    pred = torch.arange(3 * SIZE[0] * SIZE[1], dtype=torch.float32).reshape(3, *SIZE)
    out = CropLetterbox()(pred, ref)
    assert torch.equal(out, _window_crop(pred, window))
    d = CropLetterboxd(["pred", "prob"])({"image": ref, "pred": pred, "prob": pred + 1})
    assert torch.equal(d["pred"], out) and torch.equal(d["prob"], out + 1)
    h, w = shape[1:]
    assert abs(out.shape[-2] / out.shape[-1] - h / w) <= h / w * (1 / out.shape[-2] + 1 / out.shape[-1]) + 1e-6


def test_crop_letterbox_reproduces_segment_radiograph():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, 3, padding=1)
    net = torch.nn.Sequential(conv, torch.nn.Softmax(dim=1)).eval()
    for shape in [(1, 90, 30), (1, 20, 70), (1, 64, 48)]:
        image = torch.rand(shape)
        expected = segment_radiograph(net, image, SIZE)["prob"]
        x = Letterbox(SIZE, mode="area")(image)
        with torch.no_grad():
            prob = net(x.as_tensor()[None])[0]
        got = CropLetterbox()(prob, x)
        assert got.shape == expected.shape
        assert_allclose(got, expected, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match=r"channel-first 2-D image \(C, H, W\), got shape \(32, 24\)"):
        Letterbox(SIZE)(torch.rand(32, 24))
    with pytest.raises(ValueError, match="channel-first 2-D image"):
        Letterbox(SIZE)(torch.rand(1, 1, 8, 8, 8))
    for bad in [(32,), (32, 0), (-1, 24), (8, 8, 8)]:
        with pytest.raises(ValueError, match="spatial_size must be"):
            Letterbox(bad)
        with pytest.raises(ValueError, match="spatial_size must be"):
            Letterboxd("image", bad)
    pred = torch.rand(2, *SIZE)
    with pytest.raises(ValueError, match="Letterbox"):
        CropLetterbox()(pred, torch.rand(1, *SIZE))
    with pytest.raises(ValueError, match="Letterbox"):
        CropLetterbox()(pred, MetaTensor(torch.rand(1, *SIZE)))  # a MetaTensor without the trace
    with pytest.raises(ValueError, match="Letterbox"):
        letterbox_window(torch.rand(1, *SIZE))
