"""S4MIClassifier: equals the MONAI network it wraps (ResNet fc / ViT output[0]), shapes, parameter counts against
torchvision's reference models, head swap, backbone loading across head sizes, errors."""

from __future__ import annotations

import pytest
import torch
from monai.networks import nets as monai_nets

from monai_osteo.networks.nets.s4mi_backbones import S4MIClassifier, s4mi_classifier
from tests.utils import assert_allclose

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"resnet18": {"img_size": 32}, "vit_tiny": {"img_size": 32, "patch_size": 8}}


def small(arch: str, num_classes: int = 10, seed: int = 0) -> S4MIClassifier:
    torch.manual_seed(seed)
    return s4mi_classifier(arch, num_classes=num_classes, **SMALL[arch])


def x32(b: int = 2) -> torch.Tensor:
    return torch.randn(b, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("arch,feature_dim", [("resnet18", 512), ("vit_tiny", 192)])
def test_shapes_and_forward_is_head_of_features(arch, feature_dim):
    net = small(arch).eval()
    x = x32()
    with torch.no_grad():
        f, y = net.features(x), net(x)
    assert net.feature_dim == feature_dim and tuple(f.shape) == (2, feature_dim) and tuple(y.shape) == (2, 10)
    assert_allclose(y, net.head(f), rtol=1e-6, atol=1e-6)
    assert isinstance(net.head, torch.nn.Linear) and not any(k.startswith("encoder.fc") for k in net.state_dict())


def test_equals_the_monai_resnet_with_its_fc():
    net = small("resnet18").eval()
    ref = monai_nets.resnet18(spatial_dims=2, n_input_channels=3, num_classes=10, conv1_t_stride=2).eval()
    state = {k.removeprefix("encoder."): v for k, v in net.state_dict().items() if k.startswith("encoder.")}
    ref.load_state_dict({**state, "fc.weight": net.head.weight, "fc.bias": net.head.bias})
    assert net.encoder.conv1.stride == (2, 2)  # standard stem, not MONAI's default stride 1
    with torch.no_grad():
        assert_allclose(net(x32()), ref(x32()), rtol=1e-5, atol=1e-6)


def test_equals_monai_vit_output_0_with_its_classification_head():
    net = small("vit_tiny").eval()
    ref = monai_nets.ViT(
        3, 32, 8, hidden_size=192, mlp_dim=768, num_layers=12, num_heads=3, spatial_dims=2, classification=True,
        num_classes=10, post_activation=None,
    ).eval()
    state = {k.removeprefix("encoder."): v for k, v in net.state_dict().items() if k.startswith("encoder.")}
    ref.load_state_dict({**state, "classification_head.weight": net.head.weight,
                         "classification_head.bias": net.head.bias})
    with torch.no_grad():
        logits, hidden = ref(x32())
        assert len(hidden) == 12 and tuple(logits.shape) == (2, 10)
        assert_allclose(net(x32()), logits, rtol=1e-5, atol=1e-6)


def test_parameter_counts_match_the_reference_architectures():
    # torchvision resnet18/50 and vit_b_16 (1000 classes) have 11,689,512 / 25,557,032 / 86,567,656 parameters.
    # MONAI's ResNet adds biases to the 1x1 downsampling convolutions (ResNet-18: 128 + 256 + 512; ResNet-50:
    # 256 + 512 + 1024 + 2048). MONAI's ViT has no qkv bias (12 x 2304), no position embedding for the CLS token
    # (768) and an unused norm_cross_attn LayerNorm per block (12 x 1536).
    assert n_params(s4mi_classifier("resnet18")) == 11_689_512 + 896
    assert n_params(s4mi_classifier("resnet50")) == 25_557_032 + 3840
    vit = s4mi_classifier("vit_b16")
    assert vit.feature_dim == 768 and n_params(vit) == 86_567_656 - 12 * 2304 - 768 + 12 * 1536
    h, m, n_tokens = 192, 768, (64 // 8) ** 2  # ViT-tiny: same formula
    block = 3 * h * h + (h * h + h) + (h * m + m) + (m * h + h) + 3 * 2 * h
    tiny = s4mi_classifier("vit_tiny", num_classes=7, img_size=64, patch_size=8)
    assert n_params(tiny) == (3 * 8 * 8 * h + h) + n_tokens * h + h + 12 * block + 2 * h + (h * 7 + 7)


def test_vit_b16_and_resnet50_forward_at_64():
    torch.manual_seed(0)
    for arch, dim in (("vit_b16", 768), ("resnet50", 2048)):
        net = s4mi_classifier(arch, num_classes=5, img_size=64).eval()
        with torch.no_grad():
            x = torch.randn(1, 3, 64, 64)
            assert tuple(net.features(x).shape) == (1, dim) and tuple(net(x).shape) == (1, 5)


def test_reset_head_keeps_features_and_dtype():
    net = small("resnet18").double().eval()
    x = x32().double()
    with torch.no_grad():
        f0 = net.features(x)
        assert net.reset_head(3) is net
        assert tuple(net(x).shape) == (2, 3) and net.head.weight.dtype == torch.float64
        assert_allclose(net.features(x), f0)
    assert net.config["num_classes"] == 3 and net.head.in_features == 512


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny"])
def test_load_backbone_across_head_sizes(arch, tmp_path):
    src, dst = small(arch, num_classes=1000, seed=0).eval(), small(arch, num_classes=4, seed=1).eval()
    head = {k: v.clone() for k, v in dst.head.state_dict().items()}
    dst.load_backbone(src.state_dict())
    with torch.no_grad():
        assert_allclose(dst.features(x32()), src.features(x32()), rtol=1e-6, atol=1e-6)
    assert all(torch.equal(head[k], v) for k, v in dst.head.state_dict().items())  # head untouched
    path = tmp_path / "backbone.pt"
    torch.save(src.state_dict(), path)
    other = small(arch, num_classes=4, seed=2).eval()
    other.load_backbone(str(path))
    assert all(torch.equal(a, b) for a, b in zip(other.encoder.parameters(), src.encoder.parameters()))


def test_load_backbone_errors():
    vit = small("vit_tiny")
    with pytest.raises(ValueError, match=r"missing keys \['encoder\.blocks\.0"):
        vit.load_backbone(small("resnet18").state_dict())
    with pytest.raises(ValueError, match="unexpected keys"):
        vit.load_backbone({**vit.state_dict(), "encoder.extra": torch.zeros(1)})
    with pytest.raises(ValueError, match="img_size and patch_size"):  # 16 tokens vs 4 tokens
        vit.load_backbone(s4mi_classifier("vit_tiny", img_size=32, patch_size=16).state_dict())


def test_errors():
    with pytest.raises(ValueError, match="arch must be one of"):
        s4mi_classifier("resnet34")
    with pytest.raises(ValueError, match="vit_b16 has 16x16 patches"):
        s4mi_classifier("vit_b16", patch_size=8)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        s4mi_classifier("vit_tiny", img_size=40, patch_size=16)
    with pytest.raises(ValueError, match="patch_size is a ViT setting"):
        s4mi_classifier("resnet18", patch_size=16)
    with pytest.raises(ValueError, match="num_classes must be"):
        s4mi_classifier("resnet18", num_classes=0)
    with pytest.raises(ValueError, match="resize the image"):
        small("vit_tiny")(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="num_classes must be"):
        small("resnet18").reset_head(0)
