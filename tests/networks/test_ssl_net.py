"""SSL network and bone classifier: shapes per method, one backbone call per resolution, grouped = separate
features, SwaV prototype normalisation and freezing, encoder transfer, linear-probe freezing, TorchScript."""

from __future__ import annotations

import pytest
import torch

from monai_osteo.networks.nets import BoneClassifier, SSLNetwork, build_resnet_backbone
from tests.utils import assert_allclose

SMALL = {"backbone": "resnet18", "hidden_dim": 32, "projection_dim": 16, "num_prototypes": 8}


def multicrop_views(b: int = 4, g: int = 64, lo: int = 32) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(b, 1, g, g, generator=gen) for _ in range(2)] + [
        torch.randn(b, 1, lo, lo, generator=gen) for _ in range(4)
    ]


@pytest.mark.parametrize("method", ["simclr", "supcon", "swav", "vicreg"])
def test_shapes_and_one_backbone_call_per_resolution(method):
    net = SSLNetwork(method=method, **SMALL)
    calls = []
    net.backbone.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    out = net(multicrop_views())
    assert calls == [(8, 1, 64, 64), (16, 1, 32, 32)]
    assert net.feature_dim == 512
    assert [tuple(f.shape) for f in out["features"]] == [(4, 512)] * 6
    assert [tuple(p.shape) for p in out["projections"]] == [(4, 16)] * 6
    if method == "swav":
        assert [tuple(p.shape) for p in out["prototypes"]] == [(4, 8)] * 6
        assert_allclose(net.prototypes.heads[0].weight.norm(dim=1), torch.ones(8), rtol=1e-5)  # renormalised
    else:
        assert "prototypes" not in out


def test_grouped_features_equal_separate_views():
    net = SSLNetwork(method="swav", **SMALL).eval()
    views = multicrop_views()
    with torch.no_grad():
        out = net(views)
        for v, f, p in zip(views, out["features"], out["prototypes"]):
            single = net(v)  # a tensor is one view
            assert_allclose(f, net.backbone(v), atol=1e-5, rtol=1e-5)
            assert_allclose(single["features"][0], f, atol=1e-5, rtol=1e-5)
            assert_allclose(single["prototypes"][0], p, atol=1e-5, rtol=1e-5)


def test_swav_frozen_prototypes_need_step():
    net = SSLNetwork(method="swav", n_steps_frozen_prototypes=3, **SMALL)
    views = multicrop_views(g=32, lo=16)
    with pytest.raises(ValueError, match="step"):
        net(views)
    sum(p.sum() for p in net(views, step=0)["prototypes"]).backward()
    assert net.prototypes.heads[0].weight.grad is None and net.backbone.conv1.weight.grad is not None
    sum(p.sum() for p in net(views, step=3)["prototypes"]).backward()
    assert net.prototypes.heads[0].weight.grad is not None


def test_resnet50_backbone():
    backbone, dim = build_resnet_backbone("resnet50")
    assert dim == 2048 and backbone.conv1.stride == (2, 2) and backbone.fc is None
    with torch.no_grad():
        assert backbone.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 2048)
    assert build_resnet_backbone("resnet18", spatial_dims=3, conv1_t_stride=1)[0].conv1.stride == (1, 1, 1)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_bone_classifier_loads_ssl_encoder_and_scripts():
    ssl = SSLNetwork(method="simclr", **SMALL).eval()
    clf = BoneClassifier(out_channels=3, backbone="resnet18").eval()
    x = torch.randn(2, 1, 48, 48)
    clf.load_encoder(ssl.state_dict())
    with torch.no_grad():
        assert_allclose(clf.backbone(x), ssl(x)["features"][0], atol=1e-6)
        logits = clf(x)
        assert logits.shape == (2, 3)
        clf2 = BoneClassifier(out_channels=3, backbone="resnet18").eval()
        clf2.load_encoder(ssl.backbone.state_dict())
        clf2.fc.load_state_dict(clf.fc.state_dict())
        assert_allclose(clf2(x), logits, atol=1e-6)
        scripted = torch.jit.script(clf)
        assert_allclose(scripted(x), logits, atol=1e-5)
    with pytest.raises(ValueError, match="missing \\['layer4.1.bn2.weight'\\]"):
        clf.load_encoder({k: v for k, v in ssl.state_dict().items() if k != "backbone.layer4.1.bn2.weight"})
    with pytest.raises(ValueError, match="missing"):
        BoneClassifier(backbone="resnet50").load_encoder(ssl.state_dict())


def test_freeze_encoder_keeps_eval_and_no_grad():
    clf = BoneClassifier(backbone="resnet18").freeze_encoder()
    clf.train()
    assert clf.training and clf.fc.training and not clf.backbone.training
    stats = clf.backbone.bn1.running_mean.clone()
    clf(torch.randn(4, 1, 32, 32)).sum().backward()
    assert torch.equal(clf.backbone.bn1.running_mean, stats)
    assert all(p.grad is None and not p.requires_grad for p in clf.backbone.parameters())
    assert clf.fc.weight.grad is not None


def test_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        SSLNetwork(method="byol")
    with pytest.raises(ValueError, match="name must be one of"):
        SSLNetwork(backbone="resnet51")
    with pytest.raises(ValueError, match="views must hold at least one tensor"):
        SSLNetwork(**SMALL)([])
    with pytest.raises(ValueError, match="out_channels must be >= 1"):
        BoneClassifier(out_channels=0)
