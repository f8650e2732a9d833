"""Self-supervised network: ResNet encoder + lightly projection head (SimCLR, SupCon, SwaV, VICReg), multi-crop.

- [0] Chen et al., 2020, A Simple Framework for Contrastive Learning of Visual Representations (SimCLR).
- [1] Khosla et al., 2020, Supervised Contrastive Learning.
- [2] Caron et al., 2020, Unsupervised Learning of Visual Features by Contrasting Cluster Assignments (SwaV).
- [3] Bardes et al., 2022, VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning.
- [4] Caron et al., 2021, Emerging Properties in Self-Supervised Vision Transformers (DINO multi-crop wrapper).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from lightly.models.modules.heads import (
    SimCLRProjectionHead,
    SwaVProjectionHead,
    SwaVPrototypes,
    VICRegProjectionHead,
)

from monai_osteo.networks.nets.ssl_backbone import build_resnet_backbone

__all__ = ["SSLNetwork", "SSL_METHODS", "encode_by_shape"]

SSL_METHODS = ("simclr", "supcon", "swav", "vicreg")


def encode_by_shape(views: Sequence[torch.Tensor],
                    encoder: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    """``encoder`` applied to ``views`` with one call per distinct view shape (DINO's multi-crop wrapper [4]).

    Args:
        views: ``V`` tensors (B_v, C, *spatial_v).
        encoder: maps (N, C, *spatial) to (N, ...) along the batch axis.

    Returns:
        ``V`` outputs, in the order of ``views``.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(views):
        groups.setdefault(tuple(x.shape[1:]), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(views)
    for idx in groups.values():
        encoded = encoder(torch.cat([views[i] for i in idx], dim=0))
        for i, f in zip(idx, encoded.split([views[i].shape[0] for i in idx], dim=0)):
            out[i] = f
    return out  # type: ignore[return-value]


class SSLNetwork(torch.nn.Module):
    """ResNet encoder and a method-specific projection head, run once per view resolution (multi-crop).

    Views of equal shape are concatenated along the batch axis and encoded in one backbone call (the multi-crop
    wrapper of DINO [4]); the projection head then runs once on the features of all views. In training mode the
    batch-norm statistics therefore span all views of one resolution (head: all views), as in SimCLR/SwaV.

    Heads (lightly): ``"simclr"``/``"supcon"`` ``SimCLRProjectionHead(feature_dim, hidden_dim, projection_dim)``;
    ``"swav"`` ``SwaVProjectionHead`` + ``SwaVPrototypes(projection_dim, num_prototypes,
    n_steps_frozen_prototypes)`` on the L2-normalised projections; ``"vicreg"`` ``VICRegProjectionHead(feature_dim,
    hidden_dim, projection_dim)`` (the paper uses 8192/8192).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        method: one of ``SSL_METHODS``.
        backbone: ResNet name, see :func:`~monai_osteo.networks.nets.ssl_backbone.build_resnet_backbone`.
        conv1_t_stride: stride of the first convolution (2: the standard ResNet stem).
        hidden_dim: hidden width of the projection head.
        projection_dim: output width of the projection head.
        num_prototypes: number of SwaV prototypes (``"swav"`` only).
        n_steps_frozen_prototypes: SwaV prototypes get no gradient before this step (``"swav"`` only; then
            ``forward`` needs ``step``).
        widen_factor: channel-width multiplier of the ResNet (1: the standard widths; ``feature_dim`` follows it,
            e.g. 128 for ResNet-34 at 0.25).

    Attributes:
        backbone: the encoder, (B, C, *spatial) -> (B, feature_dim).
        feature_dim: encoder output width.
        projection_head: the lightly head.
        prototypes: ``SwaVPrototypes`` (``"swav"`` only, else None).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        method: str = "simclr",
        backbone: str = "resnet50",
        conv1_t_stride: int = 2,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        num_prototypes: int = 3000,
        n_steps_frozen_prototypes: int = 0,
        widen_factor: float = 1.0,
    ):
        super().__init__()
        if method not in SSL_METHODS:
            raise ValueError(f"method must be one of {SSL_METHODS}, got {method!r}.")
        if hidden_dim < 1 or projection_dim < 1:
            raise ValueError(f"hidden_dim and projection_dim must be >= 1, got {hidden_dim!r} and {projection_dim!r}.")
        if method == "swav" and num_prototypes < 1:
            raise ValueError(f"num_prototypes must be >= 1, got {num_prototypes!r}.")
        self.method = method
        self.backbone, self.feature_dim = build_resnet_backbone(
            backbone,
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            conv1_t_stride=conv1_t_stride,
            widen_factor=widen_factor,
        )
        self.prototypes: SwaVPrototypes | None = None
        if method in ("simclr", "supcon"):
            self.projection_head = SimCLRProjectionHead(self.feature_dim, hidden_dim, projection_dim)
        elif method == "vicreg":
            self.projection_head = VICRegProjectionHead(self.feature_dim, hidden_dim, projection_dim)
        else:
            self.projection_head = SwaVProjectionHead(self.feature_dim, hidden_dim, projection_dim)
            self.prototypes = SwaVPrototypes(projection_dim, num_prototypes, n_steps_frozen_prototypes)

    def encode(self, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Encode views with one backbone call per distinct view shape.

        Args:
            views: ``V`` tensors of shape (B_v, C, *spatial_v).

        Returns:
            ``V`` feature tensors of shape (B_v, feature_dim), in the order of ``views``.
        """
        return encode_by_shape(views, self.backbone)

    def forward(self, views: Sequence[torch.Tensor] | torch.Tensor, step: int | None = None) -> dict:
        """Encode and project all views.

        Args:
            views: list of ``V`` tensors (B, C, *spatial_v) (global views first, by convention), or one tensor
                (B, C, *spatial) taken as a single view.
            step: current optimisation step, needed by SwaV when ``n_steps_frozen_prototypes > 0``.

        Returns:
            dict with ``"features"``: ``V`` tensors (B, feature_dim); ``"projections"``: ``V`` tensors
            (B, projection_dim), the head outputs (not normalised); ``"swav"`` also ``"prototypes"``: ``V``
            tensors (B, num_prototypes), scores of the L2-normalised projections against the prototypes (which are
            renormalised to unit length before each training-mode forward, as in lightly's SwaV).
        """
        if isinstance(views, torch.Tensor):
            views = [views]
        views = list(views)
        if len(views) == 0:
            raise ValueError("views must hold at least one tensor (B, C, *spatial), got an empty list.")
        features = self.encode(views)
        sizes = [f.shape[0] for f in features]
        projections = self.projection_head(torch.cat(features, dim=0))
        out = {"features": features, "projections": list(projections.split(sizes, dim=0))}
        if self.prototypes is not None:
            if self.training:
                self.prototypes.normalize()
            scores = self.prototypes(F.normalize(projections, dim=1), step)
            out["prototypes"] = list(scores.split(sizes, dim=0))
        return out
