"""Linear probe on frozen encoder features: feature standardisation + one linear layer, foldable into one layer.

- [0] He et al., 2022, Masked Autoencoders Are Scalable Vision Learners (linear probing with a BatchNorm
  without affine parameters before the linear classifier).
"""

from __future__ import annotations

import torch

__all__ = ["LinearProbe"]


class LinearProbe(torch.nn.Module):
    """``Linear(BatchNorm1d(affine=False)(x))`` on (B, F) features.

    The normalisation keeps a cumulative average of the training batches' mean and variance (``momentum=None``),
    i.e. it standardises the features with their training statistics; :meth:`folded` merges it into the linear
    layer, so the exported classifier maps a patch to logits with one ``Linear`` after the encoder.

    Args:
        in_features: feature width F (e.g. ``BoneClassifier.feature_dim``).
        out_channels: number of classes.
    """

    def __init__(self, in_features: int, out_channels: int = 2) -> None:
        super().__init__()
        if in_features < 1 or out_channels < 1:
            raise ValueError(f"in_features and out_channels must be >= 1, got {in_features!r}, {out_channels!r}.")
        self.norm = torch.nn.BatchNorm1d(in_features, affine=False, momentum=None)
        self.fc = torch.nn.Linear(in_features, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, in_features) features.

        Returns:
            (B, out_channels) logits.
        """
        return self.fc(self.norm(x))

    @torch.no_grad()
    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the single linear layer equal to this module in eval mode: ``w / s``, ``b - (w / s) m``."""
        scale = (self.norm.running_var + self.norm.eps).sqrt()
        w = self.fc.weight / scale
        return w.clone(), (self.fc.bias - w @ self.norm.running_mean).clone()
