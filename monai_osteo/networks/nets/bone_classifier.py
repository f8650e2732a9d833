"""Bone classifier: the self-supervised ResNet encoder plus a linear layer (fine-tuning or linear probing).

- [0] Chen et al., 2020, A Simple Framework for Contrastive Learning of Visual Representations (linear evaluation
  of a pre-trained encoder).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from monai_osteo.networks.nets.ssl_backbone import build_resnet_backbone
from monai_osteo.networks.nets.stage_pooling import pooled_encoder

__all__ = ["BoneClassifier"]


class BoneClassifier(torch.nn.Module):
    """ResNet encoder (as in :class:`~monai_osteo.networks.nets.ssl_net.SSLNetwork`) + ``fc = Linear(F, out)``.

    TorchScript-able (``torch.jit.script``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: number of classes (logits).
        backbone: ResNet name, see :func:`~monai_osteo.networks.nets.ssl_backbone.build_resnet_backbone`.
        conv1_t_stride: stride of the first convolution; must match the pre-trained encoder's.
        feature_pooling: what ``fc`` reads, one of :data:`~monai_osteo.networks.nets.stage_pooling.FEATURE_POOLINGS`:
            ``"avg"`` the last stage's global average (the ResNet's own), ``"stages"`` the global averages of all four
            stages concatenated (:class:`~monai_osteo.networks.nets.stage_pooling.StagePooledResNet`; same encoder
            weights and state-dict keys, wider ``fc``).

    Attributes:
        backbone: the encoder, (B, C, *spatial) -> (B, feature_dim).
        feature_dim: encoder output width.
        fc: the linear classifier.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        backbone: str = "resnet50",
        conv1_t_stride: int = 2,
        feature_pooling: str = "avg",
    ):
        super().__init__()
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels!r}.")
        resnet, self.feature_dim = build_resnet_backbone(
            backbone, spatial_dims=spatial_dims, in_channels=in_channels, conv1_t_stride=conv1_t_stride
        )
        self.backbone = pooled_encoder(resnet, feature_pooling)
        self.feature_dim = int(getattr(self.backbone, "feature_dim", self.feature_dim))
        self.fc = torch.nn.Linear(self.feature_dim, out_channels)
        self.encoder_frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify.

        Args:
            x: (B, in_channels, *spatial) images.

        Returns:
            (B, out_channels) logits.
        """
        return self.fc(self.backbone(x))

    @torch.jit.unused
    def load_encoder(self, state_dict: Mapping[str, torch.Tensor]) -> BoneClassifier:
        """Load the encoder weights, strictly, from an ``SSLNetwork`` state dict or a bare backbone state dict.

        Keys prefixed ``"backbone."`` (an ``SSLNetwork`` or ``BoneClassifier`` state dict; other keys such as the
        projection head are ignored) are used if present, else all keys are taken as backbone keys. A leading
        ``"module."`` (DistributedDataParallel) is stripped.

        Args:
            state_dict: mapping of parameter/buffer names to tensors.

        Returns:
            self.
        """
        sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
        if any(k.startswith("backbone.") for k in sd):
            sd = {k.removeprefix("backbone."): v for k, v in sd.items() if k.startswith("backbone.")}
        expected = set(self.backbone.state_dict())
        missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
        if missing or unexpected:
            raise ValueError(
                f"state_dict must hold exactly the backbone's keys, got missing {missing[:10]!r}"
                f"{' ...' if len(missing) > 10 else ''} ({len(missing)} in all) and unexpected {unexpected[:10]!r} "
                f"({len(unexpected)} in all); pass SSLNetwork.state_dict() or its .backbone.state_dict() built with "
                f"the same backbone name, in_channels and spatial_dims."
            )
        self.backbone.load_state_dict(sd, strict=True)
        return self

    @torch.jit.unused
    def freeze_encoder(self) -> BoneClassifier:
        """Stop gradients to the encoder and keep it in eval mode (frozen batch-norm statistics), for linear probing.

        Returns:
            self.
        """
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.encoder_frozen = True
        return self

    @torch.jit.unused
    def train(self, mode: bool = True) -> BoneClassifier:
        """Set train/eval mode; a frozen encoder (see :meth:`freeze_encoder`) stays in eval mode."""
        super().train(mode)
        if self.encoder_frozen:
            self.backbone.eval()
        return self
