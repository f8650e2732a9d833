"""ResNet encoder for self-supervised pre-training: MONAI's ResNet without its classification layer.

- [0] He et al., 2016, Deep Residual Learning for Image Recognition.
"""

from __future__ import annotations

import torch
from monai.networks import nets as monai_nets

__all__ = ["build_resnet_backbone", "RESNET_BACKBONES"]

#: MONAI ResNet depths and their pooled feature dimension at ``widen_factor=1`` (basic blocks: 512, bottleneck blocks:
#: 2048); at another ``widen_factor`` it is ``int(512 * widen_factor) * expansion`` (see ``build_resnet_backbone``).
RESNET_BACKBONES = {
    "resnet10": 512,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "resnet200": 2048,
}


def build_resnet_backbone(
    name: str = "resnet50",
    spatial_dims: int = 2,
    in_channels: int = 1,
    conv1_t_stride: int = 2,
    conv1_t_size: int = 7,
    widen_factor: float = 1.0,
) -> tuple[torch.nn.Module, int]:
    """Build a MONAI ResNet (``monai.networks.nets.resnet*``) that returns globally pooled features.

    The final fully connected layer is dropped (``feed_forward=False``), so the module maps (B, C, *spatial) to
    (B, feature_dim): 2048 for ResNet-50/101/152/200, 512 for ResNet-10/18/34. ``conv1_t_stride=2`` gives the
    standard ResNet stem of [0] (MONAI defaults to stride 1, which costs about 4x the FLOPs). Shortcut type "B"
    (1x1 convolutions) keeps the module TorchScript-able.

    ``widen_factor`` scales every stage's width as in MONAI's ``ResNet`` (stage widths ``int(w * 64)``, ...,
    ``int(w * 512)``), keeping the depth (topology) of [0]: ``feature_dim`` becomes ``int(512 * w)`` for basic blocks
    and ``int(512 * w) * 4`` for bottleneck blocks, read from the built module (e.g. ResNet-34 at 0.25: 128 features,
    about 1/16 of the multiply-accumulates).

    Args:
        name: one of ``RESNET_BACKBONES`` (``"resnet10"`` ... ``"resnet200"``).
        spatial_dims: 2 or 3.
        in_channels: input channels (1 for radiographs).
        conv1_t_stride: stride of the first convolution.
        conv1_t_size: kernel size of the first convolution.
        widen_factor: channel-width multiplier, > 0 and at least 1/64 (so that the first stage keeps a channel).

    Returns:
        ``(module, feature_dim)``, ``feature_dim`` being the width of the module's output.
    """
    if name not in RESNET_BACKBONES:
        raise ValueError(f"name must be one of {sorted(RESNET_BACKBONES)}, got {name!r}.")
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}.")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels!r}.")
    if conv1_t_stride < 1 or conv1_t_size < 1:
        raise ValueError(
            f"conv1_t_stride and conv1_t_size must be >= 1, got {conv1_t_stride!r} and {conv1_t_size!r}."
        )
    if not widen_factor > 0 or int(64 * widen_factor) < 1:
        raise ValueError(
            f"widen_factor must be > 0 and >= 1/64 (the first stage has int(64 * widen_factor) channels), "
            f"got {widen_factor!r}."
        )
    model = getattr(monai_nets, name)(
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        widen_factor=widen_factor,
        feed_forward=False,
    )
    return model, stage_width(model.layer4)


def stage_width(stage: torch.nn.Module) -> int:
    """Output channels of a ResNet stage: its convolutions (and its 1x1 downsampling shortcut) all end at
    planes * block expansion, so the last convolution's ``out_channels``."""
    return int([m for m in stage.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)][-1].out_channels)
