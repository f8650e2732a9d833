"""Routing function of the mixture of decoder modules: ``pi(x) = softmax(MLP(AvgPool(u_e)))`` (hand paper, Eq. 1).

- [0] Hand X-ray osteoporosis journal paper (``papers/hand_xray_osteoporosis_journal.txt``), §"Uncertainty-aware
  segmentation with modularity": "a routing function r(.) operating on global encoder features AvgPool(u_e) ...
  processed by a multi-layer perceptron that outputs mixture weights pi_k(x)".
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Pool
from monai.networks.layers.utils import get_act_layer
from torch import nn

__all__ = ["MixtureRouter"]


class MixtureRouter(nn.Module):
    """Global average pooling, a one-hidden-layer MLP and a softmax over the K modules.

    The last linear layer starts at zero, so that every image starts with the uniform mixture ``pi_k = 1 / K``
    (no module is favoured before the transport plan has said which one explains which annotation).

    Args:
        spatial_dims: number of spatial dimensions of ``u_e``.
        in_channels: channels of the encoder feature map ``u_e``.
        num_experts: K.
        hidden_channels: width of the hidden layer.
        act: activation (MONAI factory name or ``(name, kwargs)``).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_experts: int,
        hidden_channels: int = 64,
        act: str | tuple = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
    ):
        super().__init__()
        if num_experts < 1 or hidden_channels < 1:
            raise ValueError(f"num_experts and hidden_channels must be >= 1, got {num_experts!r}, {hidden_channels!r}.")
        self.pool = Pool["adaptiveavg", spatial_dims](1)
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden_channels), get_act_layer(act), nn.Linear(hidden_channels, num_experts)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, u_e: torch.Tensor) -> torch.Tensor:
        """
        Args:
            u_e: (B, F1, *spatial) encoder feature map.

        Returns:
            (B, K) mixture weights, rows summing to 1.
        """
        return torch.softmax(self.mlp(self.pool(u_e).flatten(1)), dim=1)
