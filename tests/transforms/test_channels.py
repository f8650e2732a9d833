"""EnsureChannels (gray <-> RGB, alpha dropped) and ScaleBitDepth (fixed [0, 1] scale by bit depth)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_osteo.transforms import EnsureChannels, EnsureChannelsd, ScaleBitDepth, ScaleBitDepthd
from tests.utils import assert_allclose


def test_gray_to_rgb_repeats_and_rgb_to_gray_uses_bt601():
    gray = torch.rand(1, 5, 6)
    rgb = EnsureChannels(3)(gray)
    assert rgb.shape == (3, 5, 6) and all(torch.equal(rgb[c], gray[0]) for c in range(3))
    x = torch.rand(3, 5, 6, dtype=torch.float64)
    assert_allclose(EnsureChannels(1)(x)[0], 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2], rtol=1e-12)
    from PIL import Image  # PIL's "L" conversion is the same ITU-R 601-2 luma, rounded to uint8

    u8 = (np.random.default_rng(0).random((5, 6, 3)) * 255).astype(np.uint8)
    ours = EnsureChannels(1)(u8.transpose(2, 0, 1))[0]
    pil = np.asarray(Image.fromarray(u8, "RGB").convert("L"), dtype=np.float64)
    assert np.abs(np.asarray(ours) - pil).max() <= 0.5 + 1e-3


def test_alpha_is_dropped_and_types_follow_the_input():
    rgba = np.random.default_rng(0).random((4, 3, 3)).astype(np.float32)
    out = EnsureChannels(3)(rgba)
    assert isinstance(out, np.ndarray) and out.shape == (3, 3, 3) and np.array_equal(out, rgba[:3])
    gray_alpha = MetaTensor(torch.rand(2, 3, 3))
    out = EnsureChannelsd("image", channels=3)({"image": gray_alpha})["image"]
    assert isinstance(out, MetaTensor) and out.shape == (3, 3, 3) and torch.equal(out[1], gray_alpha[0])
    with pytest.raises(ValueError, match="1-4 channels"):
        EnsureChannels(3)(torch.rand(5, 3, 3))
    with pytest.raises(ValueError, match="channels must be 1"):
        EnsureChannels(2)


def test_scale_by_bit_depth_is_fixed_not_per_image():
    dim8 = np.full((1, 2, 2), 100, np.uint8)
    bright8 = np.full((1, 2, 2), 200, np.uint8)
    assert float(ScaleBitDepth()(dim8).max()) == pytest.approx(100 / 255)  # not stretched to 1
    assert float(ScaleBitDepth()(bright8).max()) == pytest.approx(200 / 255)
    u16 = np.array([[[0, 1000, 65535]]], np.uint16)
    assert_allclose(ScaleBitDepth()(u16), u16 / 65535.0, rtol=1e-6)
    unit = torch.tensor([[[0.0, 0.5, 1.0]]])
    assert torch.equal(ScaleBitDepth()(unit), unit)  # float already in [0, 1]
    assert_allclose(ScaleBitDepth(bits=16)(np.array([[[300.0]]])), np.array([[[300 / 65535]]]), rtol=1e-6)
    assert float(ScaleBitDepth(bits=8)(np.array([[[300.0]]])).max()) == 1.0  # clipped
    d = ScaleBitDepthd("image")({"image": dim8, "label": dim8})
    assert d["image"].dtype == np.float32 and d["label"] is dim8
    with pytest.raises(ValueError, match="bits must be"):
        ScaleBitDepth(bits=0)
