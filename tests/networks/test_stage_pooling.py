"""StagePooledResNet: the stage averages of a MONAI ResNet, checked against forward hooks on the plain ResNet."""

from __future__ import annotations

import pytest
import torch

from monai_osteo.networks.nets import BoneClassifier, StagePooledResNet, build_resnet_backbone, pooled_encoder


def _hooked_stage_means(resnet: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Oracle: the plain ResNet's own forward, its four stage outputs caught by hooks and averaged by hand."""
    caught = []
    hooks = [getattr(resnet, f"layer{i}").register_forward_hook(lambda m, a, out: caught.append(out))
             for i in range(1, 5)]
    try:
        pooled = resnet(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat([o.reshape(o.shape[0], o.shape[1], -1).mean(-1) for o in caught], 1), pooled


@pytest.mark.parametrize("name, spatial_dims, shape, widths", [
    ("resnet18", 2, (3, 1, 64, 48), (64, 128, 256, 512)),
    ("resnet10", 3, (2, 1, 24, 24, 16), (64, 128, 256, 512)),
    ("resnet50", 2, (2, 1, 64, 64), (256, 512, 1024, 2048)),
])
def test_stage_means_match_the_plain_resnet(name, spatial_dims, shape, widths):
    torch.manual_seed(0)
    resnet, dim = build_resnet_backbone(name, spatial_dims=spatial_dims)
    resnet.eval()
    pooled = StagePooledResNet(resnet).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected, last_avg = _hooked_stage_means(resnet, x)
        out = pooled(x)
    assert pooled.feature_dim == sum(widths) and out.shape == (shape[0], sum(widths))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out[:, -dim:], last_avg)  # the last block is the ResNet's own pooled output


def test_same_state_dict_keys_and_shared_modules():
    """A checkpoint of the plain encoder loads into the pooled one and back; the modules are shared, not copied."""
    torch.manual_seed(0)
    resnet, _ = build_resnet_backbone("resnet18")
    pooled = StagePooledResNet(resnet)
    assert list(pooled.state_dict()) == list(resnet.state_dict())
    assert pooled.layer3 is resnet.layer3
    other, _ = build_resnet_backbone("resnet18")
    StagePooledResNet(other).load_state_dict(resnet.state_dict(), strict=True)
    for (k, a), b in zip(resnet.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k


def test_bone_classifier_reads_the_chosen_pooling_and_loads_an_ssl_encoder():
    torch.manual_seed(0)
    resnet, _ = build_resnet_backbone("resnet18")
    x = torch.randn(2, 1, 64, 64)
    clf = BoneClassifier(backbone="resnet18", feature_pooling="stages").load_encoder(
        {f"backbone.{k}": v for k, v in resnet.state_dict().items()})
    assert clf.feature_dim == clf.fc.in_features == 960
    resnet.eval()
    clf.eval()
    with torch.no_grad():
        torch.testing.assert_close(clf.backbone(x), _hooked_stage_means(resnet, x)[0])
        torch.testing.assert_close(torch.jit.script(clf)(x), clf(x))
    assert BoneClassifier(backbone="resnet18").feature_dim == 512  # default: the ResNet's own pooling


def test_bad_arguments_are_named():
    resnet, _ = build_resnet_backbone("resnet18")
    assert pooled_encoder(resnet, "avg") is resnet
    with pytest.raises(ValueError, match="feature_pooling must be one of"):
        pooled_encoder(resnet, "max")
    with pytest.raises(TypeError, match="MONAI ResNet"):
        StagePooledResNet(torch.nn.Linear(2, 2))
