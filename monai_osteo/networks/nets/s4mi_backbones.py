"""S4MI classification backbones: MONAI ResNet-18/50 and ViT-B/16 / ViT-tiny with one replaceable linear head.

S4MI [0] pre-trains a ResNet-50 and a ViT-B/16 with DINO [2] and CASS [1], then fine-tunes them with labels.
The CASS code uses timm models and swaps ``fc`` (ResNet) or ``head`` (ViT) for fine-tuning; here both are MONAI
networks (no timm, no ImageNet weights offline) whose last linear layer is moved into ``self.head``, so that every
arch has the same interface: ``features`` (the input of the head, DINO's ``hidden_layer=-2``), ``head``, ``forward``.

- ResNet: ``monai.networks.nets.resnet18/50(spatial_dims=2, conv1_t_stride=2)`` (MONAI's default stride-1 stem
  costs 4x the FLOPs of the standard ResNet [3]); ``features`` = global average pool of the last stage.
- ViT: ``monai.networks.nets.ViT(spatial_dims=2, classification=True, post_activation=None)`` [4]; ``features`` =
  the normalised CLS token (MONAI's ``classification_head`` is the Linear moved into ``head``). The position
  embedding is learnable and fixed to ``img_size``: every input (and every DINO crop) must have that size.

- [0] Singh et al., 2024, Shifting to machine supervision: annotation-efficient semi and self-supervised learning for
  automatic medical image segmentation and classification (Sci. Rep.), §Methods/Classification.
- [1] Singh, Sizikova & Cirrone, 2022, CASS: Cross Architectural Self-Supervision for Medical Image Analysis.
- [2] Caron et al., 2021, Emerging Properties in Self-Supervised Vision Transformers (DINO).
- [3] He et al., 2016, Deep Residual Learning for Image Recognition.
- [4] Dosovitskiy et al., 2021, An Image is Worth 16x16 Words (ViT-B/16: 768 wide, MLP 3072, 12 layers, 12 heads).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from monai.networks import nets as monai_nets
from monai.utils import optional_import

_, has_einops = optional_import("einops")

__all__ = ["S4MIClassifier", "s4mi_classifier", "S4MI_ARCHS", "VIT_PRESETS"]

S4MI_ARCHS = ("resnet18", "resnet50", "vit_b16", "vit_tiny")

#: ViT widths (hidden_size, mlp_dim, num_layers, num_heads) and default patch size; ViT-tiny is the quick preset.
VIT_PRESETS = {
    "vit_b16": {"hidden_size": 768, "mlp_dim": 3072, "num_layers": 12, "num_heads": 12, "patch_size": 16},
    "vit_tiny": {"hidden_size": 192, "mlp_dim": 768, "num_layers": 12, "num_heads": 3, "patch_size": 16},
}


class S4MIClassifier(torch.nn.Module):
    """2-D classifier ``head(features(x))`` with a MONAI ResNet or ViT trunk (``encoder``) and a Linear ``head``.

    Args:
        arch: one of ``S4MI_ARCHS``: ``"resnet18"``, ``"resnet50"``, ``"vit_b16"``, ``"vit_tiny"``.
        in_channels: input channels (3 for RGB).
        num_classes: outputs of the head (1000 during CASS pre-training, as the ImageNet heads of the CASS code;
            the number of classes for fine-tuning, see :meth:`reset_head`).
        img_size: input height = width of the ViTs (224 in the paper preset, 64 in the quick one); must be a
            multiple of the patch size. Ignored by the ResNets, which accept any size.
        patch_size: ViT patch size (None: 16). ``"vit_b16"`` only accepts 16; ResNets only None.

    Attributes:
        encoder: the MONAI network without its last linear layer, (B, C, H, W) -> (B, feature_dim) via
            :meth:`features`.
        head: ``torch.nn.Linear(feature_dim, num_classes)``.
        feature_dim: 512 (ResNet-18), 2048 (ResNet-50), 768 (ViT-B/16), 192 (ViT-tiny).
        config: the constructor arguments (with ``num_classes`` kept up to date), to build a twin network.
    """

    def __init__(
        self,
        arch: str = "resnet50",
        in_channels: int = 3,
        num_classes: int = 1000,
        img_size: int = 224,
        patch_size: int | None = None,
    ) -> None:
        super().__init__()
        if arch not in S4MI_ARCHS:
            raise ValueError(f"arch must be one of {S4MI_ARCHS}, got {arch!r}.")
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("img_size", img_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
        self.arch, self.img_size = arch, img_size
        if arch.startswith("resnet"):
            if patch_size is not None:
                raise ValueError(f"patch_size is a ViT setting; pass None for arch={arch!r}, got {patch_size!r}.")
            net = getattr(monai_nets, arch)(
                spatial_dims=2, n_input_channels=in_channels, num_classes=num_classes, conv1_t_stride=2
            )
            head, net.fc = net.fc, None  # MONAI's ResNet.forward skips a None fc: pooled features
        else:
            if not has_einops:
                raise ImportError("MONAI's ViT needs einops: pip install einops (or monai[einops]).")
            preset = dict(VIT_PRESETS[arch])
            default_patch = preset.pop("patch_size")
            patch_size = default_patch if patch_size is None else patch_size
            if arch == "vit_b16" and patch_size != 16:
                raise ValueError(f"vit_b16 has 16x16 patches, got patch_size={patch_size!r}; use arch='vit_tiny'.")
            if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
                raise ValueError(f"patch_size must be an int >= 1, got {patch_size!r}.")
            if img_size % patch_size:
                raise ValueError(
                    f"img_size must be a multiple of patch_size, got {img_size!r} and {patch_size!r}; "
                    f"e.g. 224 or 64 with patch 16, 32 with patch 8."
                )
            net = monai_nets.ViT(
                in_channels, img_size, patch_size, **preset, spatial_dims=2, classification=True,
                num_classes=num_classes, post_activation=None,
            )
            head, net.classification_head = net.classification_head, torch.nn.Identity()  # forward -> CLS token
        self.encoder, self.head = net, head
        self.feature_dim = int(head.in_features)
        self.config = {
            "arch": arch, "in_channels": in_channels, "num_classes": num_classes, "img_size": img_size,
            "patch_size": patch_size,
        }

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Input of the head: pooled CNN features or the ViT's normalised CLS token.

        Args:
            x: (B, in_channels, H, W); ViTs need H = W = ``img_size``.

        Returns:
            (B, feature_dim).
        """
        if self.arch.startswith("vit") and tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(
                f"{self.arch} was built for {self.img_size}x{self.img_size} inputs (learnable position embedding), "
                f"got {tuple(x.shape[-2:])}; resize the image (and every DINO crop) to img_size."
            )
        out = self.encoder(x)
        return out[0] if isinstance(out, tuple) else out  # MONAI ViT returns (x, hidden_states)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, in_channels, H, W).

        Returns:
            (B, num_classes) logits.
        """
        return self.head(self.features(x))

    def reset_head(self, num_classes: int) -> S4MIClassifier:
        """Replace ``head`` by a freshly initialised ``Linear(feature_dim, num_classes)`` on the old head's device and
        dtype (fine-tuning: the CASS code swaps ``fc``/``head``). Returns ``self``."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}.")
        w = self.head.weight
        self.head = torch.nn.Linear(self.feature_dim, num_classes, device=w.device, dtype=w.dtype)
        self.config["num_classes"] = num_classes
        return self

    def load_backbone(self, state_dict: Mapping[str, torch.Tensor] | str | os.PathLike) -> None:
        """Load the trunk weights of a network of the same arch, whatever its head: ``head.*`` keys are dropped,
        every other key must match (names and shapes); the head is left as it is.

        Args:
            state_dict: an :class:`S4MIClassifier` state dict (``net.state_dict()``,
                ``CASSNetwork.cnn_state_dict()``/``vit_state_dict()``, ``DINONetwork.backbone_state_dict()``), or the
                path of a file holding one (``torch.save``).
        """
        if isinstance(state_dict, (str, os.PathLike)):
            state_dict = torch.load(state_dict, map_location="cpu", weights_only=True)
        own = {k: v for k, v in self.state_dict().items() if not k.startswith("head.")}
        body = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
        missing, unexpected = sorted(own.keys() - body.keys()), sorted(body.keys() - own.keys())
        if missing or unexpected:
            raise ValueError(
                f"state_dict does not hold an {self.arch!r} backbone: {len(missing)} missing keys {missing[:6]}, "
                f"{len(unexpected)} unexpected keys {unexpected[:6]}; save it from an S4MIClassifier with the same "
                f"arch (strip a 'module.' prefix left by DistributedDataParallel)."
            )
        wrong = [f"{k}: {tuple(body[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if body[k].shape != v.shape]
        if wrong:
            raise ValueError(
                f"state_dict shapes do not match this {self.arch!r} (check in_channels, img_size and patch_size): "
                f"{wrong[:6]}."
            )
        self.load_state_dict(body, strict=False)


def s4mi_classifier(
    arch: str = "resnet50",
    in_channels: int = 3,
    num_classes: int = 1000,
    img_size: int = 224,
    patch_size: int | None = None,
) -> S4MIClassifier:
    """Build an :class:`S4MIClassifier` (S4MI paper preset: ``"resnet50"``/``"vit_b16"`` at 224; quick preset:
    ``"resnet18"``/``"vit_tiny"`` at 64 with patch 16 or 8)."""
    return S4MIClassifier(arch, in_channels, num_classes, img_size, patch_size)
