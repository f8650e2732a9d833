"""Vertebral network: narrow ResNet widths (feature_dim follows widen_factor), one-tensor output and its layout,
SSL encoder transfer (identical backbone outputs; width/depth mismatches raise), TorchScript equal to eager."""

from __future__ import annotations

import pytest
import torch

from monai_osteo.networks.nets import SSLNetwork, VertebraNet, build_resnet_backbone, split_vertebra_output
from tests.utils import assert_allclose

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

TINY = {"backbone": "resnet34", "widen_factor": 0.125, "expert_hidden": 8}
SSL_TINY = {"spatial_dims": 3, "method": "swav", "hidden_dim": 16, "projection_dim": 8, "num_prototypes": 4}


def volume(b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(b, 1, 16, 16, 16, generator=gen), torch.tensor([0, 2, 1, 1])[:b]


@pytest.mark.parametrize(
    "name, spatial_dims, widen_factor, dim",
    [("resnet34", 3, 0.25, 128), ("resnet34", 3, 0.125, 64), ("resnet50", 2, 0.5, 1024), ("resnet18", 2, 1.0, 512)],
)
def test_feature_dim_follows_widen_factor(name, spatial_dims, widen_factor, dim):
    torch.manual_seed(0)
    backbone, feature_dim = build_resnet_backbone(name, spatial_dims=spatial_dims, widen_factor=widen_factor)
    assert feature_dim == dim
    with torch.no_grad():
        out = backbone.eval()(torch.randn(1, 1, *([16] * spatial_dims)))
    assert tuple(out.shape) == (1, dim)


@pytest.mark.parametrize("widen_factor", [0.0, -1.0, 0.01])
def test_bad_widen_factor_raises(widen_factor):
    with pytest.raises(ValueError, match="widen_factor must be > 0"):
        build_resnet_backbone("resnet34", widen_factor=widen_factor)


def test_ssl_network_passes_widen_factor():
    net = SSLNetwork(backbone="resnet34", widen_factor=0.125, **SSL_TINY)
    assert net.feature_dim == 64 and net.backbone.conv1.out_channels == 8


def test_output_shape_layout_and_split():
    torch.manual_seed(0)
    net = VertebraNet(**TINY).eval()
    assert net.feature_dim == 64 and net.head.in_features == 64
    assert net.layout == {"class": (0, 2), "bmd": (2, 3), "position": (3, 21), "gate": (21, 24)}
    x, d = volume()
    with torch.no_grad():
        out = net(x, d)
    assert tuple(out.shape) == (2, 2 + 1 + 18 + 3)
    parts = net.split(out)
    assert {k: tuple(v.shape) for k, v in parts.items()} == {
        "class": (2, 2), "bmd": (2,), "position": (2, 18), "gate": (2, 3)
    }
    for name, (start, stop) in net.layout.items():
        assert torch.equal(parts[name].reshape(2, -1), out[:, start:stop])
    assert_allclose(parts["gate"], torch.full((2, 3), 1.0 / 3.0), rtol=1e-6)  # zero-initialised gate
    free = split_vertebra_output(out)
    assert all(torch.equal(free[k], parts[k]) for k in parts)
    with pytest.raises(ValueError, match=r"output must have shape \(B, 24\)"):
        net.split(out[:, :-1])
    with pytest.raises(ValueError, match="check num_classes and num_positions"):
        split_vertebra_output(out[:, :21])


def test_output_matches_backbone_and_head():
    torch.manual_seed(0)
    net = VertebraNet(num_experts=2, num_positions=5, **TINY).eval()
    x, d = volume()
    with torch.no_grad():
        head_out, gate = net.head(net.backbone(x), d)
        out = net(x, d)
    assert tuple(out.shape) == (2, 2 + 1 + 5 + 2)
    assert torch.equal(out, torch.cat([head_out, gate], dim=1))


def test_load_encoder_from_ssl_network(tmp_path):
    torch.manual_seed(0)
    ssl = SSLNetwork(backbone="resnet34", widen_factor=0.125, **SSL_TINY).eval()
    torch.manual_seed(1)
    net = VertebraNet(**TINY).eval()
    x, d = volume()
    with torch.no_grad():
        reference = ssl.backbone(x)
        assert not torch.allclose(net.backbone(x), reference)
        keys = net.load_encoder(ssl.state_dict())
        assert_allclose(net.backbone(x), reference, rtol=0, atol=0)
    assert keys == ["backbone." + k for k in net.backbone.state_dict()]
    # a MONAI CheckpointSaver file: {"model": state_dict, "optimizer": ...}
    torch.manual_seed(2)
    other = VertebraNet(**TINY).eval()
    path = tmp_path / "checkpoint_epoch=1.pt"
    torch.save({"model": ssl.state_dict(), "optimizer": {"state": {}, "param_groups": []}}, path)
    assert other.load_encoder(str(path)) == keys
    with torch.no_grad():
        assert_allclose(other.backbone(x), reference, rtol=0, atol=0)
        other(x, d)


def test_load_encoder_mismatches_raise():
    torch.manual_seed(0)
    net = VertebraNet(**TINY)
    wider = SSLNetwork(backbone="resnet34", widen_factor=0.25, **SSL_TINY).state_dict()
    with pytest.raises(ValueError, match="shapes differ.*widen_factor"):
        net.load_encoder(wider)
    shallower = SSLNetwork(backbone="resnet18", widen_factor=0.125, **SSL_TINY).state_dict()
    with pytest.raises(ValueError, match="unexpected keys|missing keys"):
        net.load_encoder(shallower)
    with pytest.raises(ValueError, match="prefix 'encoder.'"):
        net.load_encoder(shallower, prefix="encoder.")


def test_torchscript_equals_eager():
    torch.manual_seed(0)
    net = VertebraNet(**TINY).eval()
    with torch.no_grad():
        for p in net.head.gate.parameters():
            p.normal_(0.0, 0.5)  # a non-uniform gate, so the device matters
    scripted = torch.jit.script(net)
    x, d = volume()
    with torch.no_grad():
        out = net(x, d)
        out_s = scripted(x, d)
        assert_allclose(out_s, out, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(scripted(x, (d + 1) % 3), out_s)
        parts = scripted.split(out_s)
    assert tuple(parts["bmd"].shape) == (2,)
    with pytest.raises(Exception, match="device must hold indices"):
        scripted(x, torch.tensor([0, 3]))
