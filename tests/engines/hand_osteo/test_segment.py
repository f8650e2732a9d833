"""letterbox's window maps back onto the original pixels; segment_radiograph keeps the radiograph's aspect ratio."""

from __future__ import annotations

import math

import pytest
import torch

from monai_osteo.engines.hand_osteo.segment import letterbox, segment_radiograph
from monai_osteo.networks.nets import MultiDecoderOTUNet
from tests.utils import assert_allclose

SIZE = (64, 48)


def _crop(padded, window):
    hp, wp = padded.shape[-2:]
    t, b, left, r = window
    return padded[..., round(t * hp):round(b * hp), round(left * wp):round(r * wp)]


@pytest.mark.parametrize("shape", [(1, 60, 40), (2, 60, 40), (1, 61, 40)])
def test_letterbox_no_padding_when_ratio_matches(shape):
    image = torch.rand(shape)
    padded, window = letterbox(image, 1.5)
    assert padded is image and window == (0.0, 1.0, 0.0, 1.0)


@pytest.mark.parametrize("shape, ratio", [((1, 300, 100), 64 / 48), ((1, 50, 200), 2.0), ((3, 37, 91), 0.75),
                                          ((1, 101, 33), 1.0), ((2, 20, 90), 64 / 48)])
def test_letterbox_pads_centred_and_window_maps_back(shape, ratio):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(shape, generator=g) + 0.5  # strictly positive so padding (zeros) is recognisable
    padded, window = letterbox(image, ratio)
    h, w = shape[-2:]
    hp, wp = padded.shape[-2:]
    assert padded.shape[0] == shape[0]
    assert hp >= h and wp >= w and (hp == h or wp == w)  # padding along one axis only
    assert abs(hp / wp - ratio) * wp <= 1.0  # output ratio within one pixel of the target
    assert torch.equal(_crop(padded, window), image)  # window fractions -> exactly the original pixels
    top, left = round(window[0] * hp), round(window[2] * wp)
    assert abs(top - (hp - h - top)) <= 1 and abs(left - (wp - w - left)) <= 1  # centred
    assert padded.sum() == pytest.approx(image.sum().item(), rel=1e-6)  # the rest is zeros
    assert all(0.0 <= f <= 1.0 for f in window)


def test_letterbox_example_values():
    padded, window = letterbox(torch.ones(1, 300, 100), 64 / 48)
    assert tuple(padded.shape) == (1, 300, 225)  # 300 / (4/3) = 225
    assert window == pytest.approx((0.0, 1.0, 62 / 225, 162 / 225))
    assert padded[..., :62].abs().sum() == 0 and padded[..., 162:].abs().sum() == 0


@pytest.fixture(scope="module")
def tiny_net():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = MultiDecoderOTUNet(spatial_dims=2, in_channels=1, out_channels=8, channels=(4, 8), num_decoders=2,
                             num_samples=1, latent_dim=2, head_channels=4)
    return net.eval()


def _image():
    return torch.rand(1, 300, 100, generator=torch.Generator().manual_seed(1))


def _check_aspect(t, image):
    h, w = t.shape[-2:]
    assert abs(h * image.shape[-1] / image.shape[-2] - w) <= 1.0, (tuple(t.shape), tuple(image.shape))


def test_segment_radiograph_probabilities_keep_aspect(tiny_net):
    image = _image()
    out = segment_radiograph(tiny_net, image, SIZE)
    assert set(out) == {"prob"}
    prob = out["prob"]
    assert prob.shape[0] == 8 and prob.shape[-2] == SIZE[0] and prob.shape[-1] < SIZE[1]
    _check_aspect(prob, image)
    assert_allclose(prob.sum(0), torch.ones(prob.shape[1:]), atol=1e-5)
    assert bool((prob >= 0).all())
    # the mean path is deterministic
    assert torch.equal(segment_radiograph(tiny_net, image, SIZE)["prob"], prob)


def test_segment_radiograph_uncertainty(tiny_net):
    image = _image()
    out = segment_radiograph(tiny_net, image, SIZE, uncertainty=True, num_samples=2)
    assert set(out) == {"prob", "entropy", "mutual_information"}
    prob = out["prob"]
    _check_aspect(prob, image)
    assert_allclose(prob.sum(0), torch.ones(prob.shape[1:]), atol=1e-5)
    for key in ("entropy", "mutual_information"):
        assert out[key].shape == prob.shape[1:]
        assert bool((out[key] >= 0).all()) and bool((out[key] <= 1).all())
    assert bool((out["mutual_information"] <= out["entropy"] + 1e-6).all())  # MI is the between-hypotheses part
    # entropy is that of the returned mixture mean, normalised by log C
    oracle = -(prob.clamp_min(1e-30).log() * prob).sum(0) / math.log(8)
    assert_allclose(out["entropy"], oracle.clamp(0, 1), atol=1e-4)


class _Identity2(torch.nn.Module):
    """A generic network: channel 0 = the image, channel 1 = 1 - image (probabilities if the image is in [0, 1])."""

    def forward(self, x):
        return torch.cat([x, 1 - x], 1)


def test_segment_radiograph_generic_module_window_and_entropy():
    image = torch.ones(1, 300, 100)
    out = segment_radiograph(_Identity2(), image, SIZE, uncertainty=True)
    assert set(out) == {"prob", "entropy"}
    prob = out["prob"]
    _check_aspect(prob, image)
    # inside the window's inner columns only image (value 1) is seen, none of the zero padding
    assert_allclose(prob[0, :, 1:-1], torch.ones_like(prob[0, :, 1:-1]), atol=1e-6)
    oracle = -(prob.clamp_min(1e-12).log() * prob).sum(0) / math.log(2)
    assert_allclose(out["entropy"], oracle, atol=1e-6)


@pytest.mark.parametrize("shape", [(300, 100), (2, 300, 100), (1, 1, 300, 100)])
def test_segment_radiograph_rejects_non_single_channel_2d(tiny_net, shape):
    with pytest.raises(ValueError, match=r"image must be a \(1, H, W\) radiograph"):
        segment_radiograph(tiny_net, torch.rand(shape), SIZE)
