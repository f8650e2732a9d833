"""ResNet U-Net of MedSASS (encoder depth 3, decoder 256/128/64 with scSE channel attention) from MONAI parts.

MedSASS (App. A.1) uses segmentation_models_pytorch's ``Unet(encoder_name="resnet50", encoder_depth=3,
decoder_channels=(256, 128, 64), decoder_attention_type="scse")``. smp is not a dependency of this project and its
encoder classes are not MONAI's, so the same architecture is assembled here from MONAI components, with one
encoder class (:class:`ResNetEncoder`) shared with the self-supervised baselines so that encoder weights transfer
key for key:

- encoder: MONAI ``ResNetFeatures`` (``resnet_params``: ResNet-18/34 shortcut "A", ResNet-50 shortcut "B" without
  downsample bias) truncated after ``depth - 1`` residual stages: features at strides 2 (stem), 4 (layer1),
  8 (layer2) for depth 3, as smp's depth-3 encoder;
- decoder: one MONAI ``UpCat`` per level (nearest ×2 upsampling, concatenation with the skip, two conv-BN-ReLU), the
  last level without skip (smp's identity feature carries none), and smp's scSE attention on the concatenated input
  and on the output of every block (cSE = MONAI ``ChannelSELayer``; sSE = 1×1 convolution + sigmoid);
- head: 3×3 convolution to ``out_channels`` logits at the input resolution.

- [0] Singh & Cirrone, MedSASS, App. A.1 (architecture).
- [1] Roy et al., 2018, Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional Networks (scSE).
- [2] Iakubovskii, 2019, segmentation_models_pytorch (``Unet``, ``SCSEModule``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import ChannelSELayer
from monai.networks.layers.factories import Conv
from monai.networks.nets.basic_unet import UpCat
from monai.networks.nets.resnet import ResNetFeatures

__all__ = ["ResNetEncoder", "ResNetUNet", "SCSE", "RESNET_UNET_BACKBONES"]

#: backbones of :class:`ResNetEncoder` and the channels of their stem and residual stages
RESNET_UNET_BACKBONES = {
    "resnet10": (64, 64, 128, 256, 512),
    "resnet18": (64, 64, 128, 256, 512),
    "resnet34": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048),
    "resnet101": (64, 256, 512, 1024, 2048),
    "resnet152": (64, 256, 512, 1024, 2048),
    "resnet200": (64, 256, 512, 1024, 2048),
}


class ResNetEncoder(ResNetFeatures):
    """MONAI ``ResNetFeatures`` truncated to ``depth`` feature levels (stem + ``depth - 1`` residual stages).

    The residual stages past ``depth - 1`` are removed (not only skipped), so a depth-3 ResNet-50 holds 1.4 M
    parameters instead of 23.5 M and nothing unused reaches the optimiser or DistributedDataParallel.
    The state-dict keys are those of ``ResNetFeatures`` (``conv1.*``, ``bn1.*``, ``layer1.*``, ...).

    Args:
        backbone: one of ``RESNET_UNET_BACKBONES``.
        in_channels: input channels (3 for RGB).
        depth: number of feature levels, 1-5 (3 in MedSASS).
        spatial_dims: 2 or 3.

    Attributes:
        out_channels: channels of the ``depth`` feature maps, e.g. ``(64, 256, 512)`` for a depth-3 ResNet-50.
        feature_dim: channels of the deepest map (the pooled feature size of the self-supervised baselines).
    """

    def __init__(self, backbone: str = "resnet50", in_channels: int = 3, depth: int = 3, spatial_dims: int = 2):
        if backbone not in RESNET_UNET_BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(RESNET_UNET_BACKBONES)}, got {backbone!r}.")
        if not 1 <= depth <= 5:
            raise ValueError(f"depth must be in 1..5 (stem + up to 4 residual stages), got {depth!r}.")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels!r}.")
        super().__init__(backbone, pretrained=False, spatial_dims=spatial_dims, in_channels=in_channels)
        self.depth = depth
        for i in range(depth, 5):
            delattr(self, f"layer{i}")
        for name in ("avgpool", "fc"):
            if hasattr(self, name):
                delattr(self, name)
        self.out_channels = RESNET_UNET_BACKBONES[backbone][:depth]
        self.feature_dim = self.out_channels[-1]

    def forward(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of (B, in_channels, *spatial) inputs: ``depth`` tensors at strides 2, 4, 8, 16, 32."""
        x = self.act(self.bn1(self.conv1(inputs)))
        features = [x]
        if self.depth > 1 and not self.no_max_pool:
            x = self.maxpool(x)
        for i in range(1, self.depth):
            x = getattr(self, f"layer{i}")(x)
            features.append(x)
        return features


class SCSE(torch.nn.Module):
    """Concurrent spatial and channel squeeze & excitation [1]: ``x * cSE(x) + x * sSE(x)`` (smp's ``SCSEModule``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input.
        reduction: channel reduction of the cSE bottleneck (16 as smp).
    """

    def __init__(self, spatial_dims: int, in_channels: int, reduction: int = 16):
        super().__init__()
        self.cse = ChannelSELayer(spatial_dims, in_channels, r=max(1, min(reduction, in_channels)))
        self.sse = torch.nn.Sequential(Conv[Conv.CONV, spatial_dims](in_channels, 1, kernel_size=1), torch.nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *spatial) -> (B, C, *spatial)."""
        return self.cse(x) + x * self.sse(x)


class _AttentionUpCat(UpCat):
    """MONAI ``UpCat`` with smp's decoder attention on the concatenated input and on the output."""

    def __init__(self, spatial_dims: int, in_chns: int, cat_chns: int, out_chns: int, attention: str | None,
                 **kwargs) -> None:
        super().__init__(spatial_dims, in_chns, cat_chns, out_chns, **kwargs)
        use = attention == "scse"
        self.attention1 = SCSE(spatial_dims, in_chns + cat_chns) if use and cat_chns else torch.nn.Identity()
        self.attention2 = SCSE(spatial_dims, out_chns) if use else torch.nn.Identity()

    def forward(self, x: torch.Tensor, x_e: torch.Tensor | None) -> torch.Tensor:
        x0 = self.upsample(x)
        if x_e is not None:
            if x0.shape[2:] != x_e.shape[2:]:  # odd sizes: MONAI's UpCat pads the upsampled map the same way
                pad = []
                for d in range(x0.ndim - 1, 1, -1):
                    pad += [0, x_e.shape[d] - x0.shape[d]]
                x0 = torch.nn.functional.pad(x0, pad, "replicate")
            x0 = self.attention1(torch.cat([x_e, x0], dim=1))
        return self.attention2(self.convs(x0))


class ResNetUNet(torch.nn.Module):
    """U-Net with a truncated ResNet encoder, MedSASS's segmentation network [0].

    Args:
        spatial_dims: 2 (images) or 3.
        in_channels: input channels (3 for RGB).
        out_channels: output logits (1 for MedSASS's binary sigmoid head).
        backbone: one of ``RESNET_UNET_BACKBONES`` (``"resnet50"`` in the paper; a quick CPU preset may use
            ``"resnet18"``).
        encoder_depth: feature levels of the encoder (3 in the paper); the input is divisible by ``2**depth``.
        decoder_channels: one width per level, deepest first (paper: ``(256, 128, 64)``).
        attention: ``"scse"`` (the paper's channel attention) or ``None``.
        norm: normalisation of the decoder convolutions (MONAI factory name).
        act: activation of the decoder convolutions (MONAI factory name).

    ``encoder`` is a :class:`ResNetEncoder`; ``encoder_state_dict()`` / ``load_encoder()`` move its weights alone
    (MedSASS "E" transfer), ``state_dict()`` the whole network ("E+D").

    Example::

        net = ResNetUNet(2, 3, 1, backbone="resnet50")  # (B, 3, 224, 224) -> (B, 1, 224, 224) logits
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        backbone: str = "resnet50",
        encoder_depth: int = 3,
        decoder_channels: Sequence[int] = (256, 128, 64),
        attention: str | None = "scse",
        norm: str | tuple = ("batch", {"eps": 1e-5, "momentum": 0.1}),
        act: str | tuple = ("relu", {"inplace": True}),
    ):
        super().__init__()
        if attention not in ("scse", None):
            raise ValueError(f"attention must be 'scse' or None, got {attention!r}.")
        if len(decoder_channels) != encoder_depth:
            raise ValueError(f"decoder_channels must give one width per encoder level ({encoder_depth}), got "
                             f"{list(decoder_channels)!r}.")
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels!r}.")
        self.encoder = ResNetEncoder(backbone, in_channels, encoder_depth, spatial_dims)
        enc = self.encoder.out_channels
        ins = [enc[-1], *decoder_channels[:-1]]
        skips = [*enc[:-1][::-1], 0]
        self.decoder = torch.nn.ModuleList(
            _AttentionUpCat(spatial_dims, i, s, o, attention, act=act, norm=norm, bias=False, upsample="nontrainable",
                            pre_conv=None, interp_mode="nearest", align_corners=None, halves=False)
            for i, s, o in zip(ins, skips, decoder_channels)
        )
        self.head = Conv[Conv.CONV, spatial_dims](decoder_channels[-1], out_channels, kernel_size=3, padding=1)
        self.stride = 2**encoder_depth
        self.encoder_frozen = False

    def freeze_encoder(self, frozen: bool = True) -> ResNetUNet:
        """Freeze (or unfreeze) the encoder: no gradients, and batch-norm statistics fixed (the encoder stays in
        eval mode when the network is put in training mode). Returns self."""
        self.encoder_frozen = bool(frozen)
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> ResNetUNet:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> (B, out_channels, *spatial) logits; spatial sizes divisible by ``stride``."""
        if any(s % self.stride for s in x.shape[2:]):
            raise ValueError(f"spatial size must be divisible by {self.stride} (2**encoder_depth), got "
                             f"{tuple(x.shape[2:])}: resize or pad the input (e.g. monai.transforms.DivisiblePad).")
        features = self.encoder(x)
        y = features[-1]
        skips = features[:-1][::-1]
        for i, block in enumerate(self.decoder):
            y = block(y, skips[i] if i < len(skips) else None)
        return self.head(y)

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's weights (keys of :class:`ResNetEncoder`), for MedSASS "E" transfer."""
        return self.encoder.state_dict()

    def load_encoder(self, state: dict[str, torch.Tensor], prefix: str = "") -> None:
        """Load encoder weights: ``state`` holds :class:`ResNetEncoder` keys, optionally under ``prefix``
        (e.g. ``"encoder."`` for a whole ``ResNetUNet`` state dict). Every encoder key must be present."""
        own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        expected = self.encoder.state_dict().keys()  # checked before loading: a refused state changes nothing
        missing = [k for k in expected if k not in own]
        unexpected = [k for k in own if k not in expected]
        if missing:
            raise ValueError(f"state misses encoder weights {missing[:5]}{'...' if len(missing) > 5 else ''} "
                             f"(prefix {prefix!r}): is it from the same backbone and encoder depth?")
        if unexpected:
            raise ValueError(f"state has keys that are not this encoder's: {unexpected[:5]} (prefix {prefix!r}).")
        self.encoder.load_state_dict(own)
