"""ResNet U-Net (MedSASS): output and feature shapes, encoder truncation against MONAI ``ResNetFeatures``, scSE
attention against its formula, gradients, encoder weight transfer (``encoder_state_dict`` / ``load_encoder``),
errors, 3-D."""

from __future__ import annotations

import copy

import pytest
import torch
from monai.networks.nets.resnet import ResNetFeatures

from monai_osteo.networks.nets.resnet_unet import RESNET_UNET_BACKBONES, SCSE, ResNetEncoder, ResNetUNet
from tests.utils import assert_allclose


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "backbone, depth, decoder_channels",
    [("resnet18", 3, (32, 16, 8)), ("resnet50", 3, (256, 128, 64)), ("resnet18", 5, (64, 32, 16, 16, 8))],
)
def test_output_shape(backbone, depth, decoder_channels):
    torch.manual_seed(0)
    net = ResNetUNet(2, 3, 2, backbone=backbone, encoder_depth=depth, decoder_channels=decoder_channels)
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 2, 32, 32)
    assert torch.isfinite(out).all()
    assert net.stride == 2**depth


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_encoder_features_strides_and_channels(backbone):
    enc = ResNetEncoder(backbone, in_channels=3, depth=5).eval()
    assert enc.out_channels == RESNET_UNET_BACKBONES[backbone]
    assert enc.feature_dim == RESNET_UNET_BACKBONES[backbone][-1]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        feats = enc(x)
    assert [tuple(f.shape) for f in feats] == [
        (1, c, 32 // 2 ** (i + 1), 32 // 2 ** (i + 1)) for i, c in enumerate(enc.out_channels)
    ]
    if backbone == "resnet18":  # depth 5 is MONAI's ResNetFeatures: same keys (strict load), same features
        full = ResNetFeatures(backbone, pretrained=False, spatial_dims=2, in_channels=3).eval()
        full.load_state_dict(enc.state_dict())
        with torch.no_grad():
            for f, r in zip(feats, full(x)):
                assert_allclose(f, r)
    depth3 = ResNetEncoder(backbone, in_channels=3, depth=3)
    assert depth3.out_channels == RESNET_UNET_BACKBONES[backbone][:3]


def test_truncation_param_counts_and_removed_layers():
    full = ResNetFeatures("resnet10", pretrained=False, spatial_dims=2, in_channels=3)
    counts = []
    for depth in range(1, 6):
        enc = ResNetEncoder("resnet10", 3, depth)
        counts.append(_n_params(enc))
        keys = enc.state_dict().keys()
        for i in range(1, 5):
            assert hasattr(enc, f"layer{i}") == (i < depth)
            assert any(k.startswith(f"layer{i}.") for k in keys) == (i < depth)
        assert not hasattr(enc, "fc") and not hasattr(enc, "avgpool")
        assert set(keys) <= set(full.state_dict())
    assert all(a < b for a, b in zip(counts, counts[1:])), counts
    assert counts[-1] == _n_params(full)
    assert counts[0] == 64 * 3 * 7 * 7 + 2 * 64  # stem only: conv1 + bn1
    with torch.no_grad():
        assert len(ResNetEncoder("resnet10", 3, 1)(torch.randn(1, 3, 16, 16))) == 1


def test_attention_modules():
    plain = ResNetUNet(2, 3, 1, backbone="resnet18", decoder_channels=(32, 16, 8), attention=None)
    scse = ResNetUNet(2, 3, 1, backbone="resnet18", decoder_channels=(32, 16, 8), attention="scse")
    assert not any(isinstance(m, SCSE) for m in plain.modules())
    # attention1 on the two concatenations with a skip, attention2 after each of the three blocks
    assert sum(isinstance(m, SCSE) for m in scse.modules()) == 5
    assert _n_params(scse) > _n_params(plain)
    assert set(plain.state_dict()) < set(scse.state_dict())


def test_non_divisible_input_raises():
    net = ResNetUNet(2, 3, 1, backbone="resnet18", decoder_channels=(32, 16, 8))
    with pytest.raises(ValueError, match=r"divisible by 8.*DivisiblePad"):
        net(torch.randn(1, 3, 60, 64))


def test_gradients_reach_encoder_and_decoder():
    torch.manual_seed(0)
    net = ResNetUNet(2, 3, 1, backbone="resnet10", decoder_channels=(32, 16, 8))
    net(torch.randn(2, 3, 32, 32)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for name in (
        "encoder.conv1.weight",
        "encoder.layer2.0.conv2.weight",
        "decoder.0.convs.conv_0.conv.weight",
        "decoder.0.attention1.sse.0.weight",
        "decoder.2.attention2.cse.fc.0.weight",
        "head.weight",
    ):
        assert net.get_parameter(name).grad.abs().sum() > 0, name


def _pair():
    torch.manual_seed(0)
    src = ResNetUNet(2, 3, 1, backbone="resnet10", decoder_channels=(32, 16, 8))
    src(torch.randn(2, 3, 32, 32))  # train-mode step: BN running statistics differ from a fresh network's
    torch.manual_seed(1)
    dst = ResNetUNet(2, 3, 1, backbone="resnet10", decoder_channels=(32, 16, 8))
    return src.eval(), dst.eval()


@pytest.mark.parametrize("whole", [False, True])
def test_load_encoder_round_trip(whole):
    src, dst = _pair()
    before = copy.deepcopy(dst.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(src.encoder(x)[-1], dst.encoder(x)[-1])
        if whole:
            dst.load_encoder(src.state_dict(), prefix="encoder.")
        else:
            dst.load_encoder(src.encoder_state_dict())
        for a, b in zip(src.encoder(x), dst.encoder(x)):
            assert torch.equal(a, b)
    after, reference = dst.state_dict(), src.state_dict()
    assert after.keys() == reference.keys() == before.keys()
    for k in after:
        if k.startswith("encoder."):
            assert torch.equal(after[k], reference[k]), k  # running statistics included
        else:
            assert k.startswith(("decoder.", "head.")), k
            assert torch.equal(after[k], before[k]), k  # decoder and head untouched
    differ = {k for k in after if not torch.equal(after[k], reference[k])}
    assert differ and all(k.startswith(("decoder.", "head.")) for k in differ)
    assert "head.weight" in differ and "decoder.0.convs.conv_0.conv.weight" in differ


def test_load_encoder_errors_change_nothing():
    """Regression: ``load_state_dict(strict=False)`` copied the present keys before the error was raised."""
    src, dst = _pair()
    before = copy.deepcopy(dst.state_dict())
    state = src.encoder_state_dict()
    missing = {k: v for k, v in state.items() if k != "conv1.weight"}
    with pytest.raises(ValueError, match=r"misses encoder weights \['conv1.weight'\]"):
        dst.load_encoder(missing)
    with pytest.raises(ValueError, match="misses encoder weights"):
        dst.load_encoder(src.state_dict())  # whole U-Net state without prefix="encoder."
    deeper = ResNetEncoder("resnet10", 3, 4).state_dict()
    with pytest.raises(ValueError, match=r"not this encoder's: \['layer3"):
        dst.load_encoder(deeper)
    deeper_net = ResNetUNet(2, 3, 1, backbone="resnet10", encoder_depth=4, decoder_channels=(32, 16, 8, 8))
    with pytest.raises(ValueError, match=r"misses encoder weights \['layer3"):
        deeper_net.load_encoder(state)  # a depth-3 state lacks layer3
    for k, v in dst.state_dict().items():  # a refused state loads nothing
        assert torch.equal(v, before[k]), k


def test_encoder_state_dict_keys():
    net = ResNetUNet(2, 3, 1, backbone="resnet50", decoder_channels=(32, 16, 8))
    sub = {k[len("encoder.") :] for k in net.state_dict() if k.startswith("encoder.")}
    assert set(ResNetEncoder("resnet50", 3, 3).state_dict()) == sub == set(net.encoder_state_dict())
    assert all(k.startswith(("encoder.", "decoder.", "head.")) for k in net.state_dict())


def test_scse_matches_formula():
    torch.manual_seed(0)
    module = SCSE(2, 32)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(2, 32, 5, 6)
    w1, b1 = module.cse.fc[0].weight, module.cse.fc[0].bias  # (2, 32): reduction 16 as smp
    w2, b2 = module.cse.fc[2].weight, module.cse.fc[2].bias
    wc, bc = module.sse[0].weight, module.sse[0].bias  # (1, 32, 1, 1)
    assert w1.shape == (32 // 16, 32)
    channel = torch.sigmoid(torch.relu(x.mean((2, 3)) @ w1.T + b1) @ w2.T + b2)[:, :, None, None]
    spatial = torch.sigmoid(torch.einsum("bchw,c->bhw", x, wc[0, :, 0, 0]) + bc)[:, None]
    expected = x * channel + x * spatial
    with torch.no_grad():
        assert_allclose(module(x), expected, rtol=1e-5, atol=1e-6)
    assert SCSE(2, 8).cse.fc[0].out_features == 1  # fewer channels than the reduction: one hidden unit


def test_3d():
    torch.manual_seed(0)
    net = ResNetUNet(3, 1, 2, backbone="resnet18", decoder_channels=(16, 8, 8))
    out = net(torch.randn(1, 1, 16, 16, 16))
    assert out.shape == (1, 2, 16, 16, 16)
    out.mean().backward()
    assert net.encoder.conv1.weight.grad.abs().sum() > 0
    assert sum(isinstance(m, SCSE) for m in net.modules()) == 5


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ResNetEncoder("resnet19"), "backbone must be one of"),
        (lambda: ResNetEncoder(depth=0), "depth must be in 1..5"),
        (lambda: ResNetEncoder(depth=6), "depth must be in 1..5"),
        (lambda: ResNetEncoder(in_channels=0), "in_channels must be >= 1"),
        (lambda: ResNetUNet(attention="cbam"), "attention must be 'scse' or None"),
        (lambda: ResNetUNet(decoder_channels=(256, 128)), "one width per encoder level"),
        (lambda: ResNetUNet(out_channels=0), "out_channels must be >= 1"),
    ],
)
def test_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()
