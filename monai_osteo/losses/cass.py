"""CASS loss: cosine agreement between a CNN's and a Transformer's outputs for the same image (BYOL form).

- [0] Singh, Sizikova & Cirrone, 2022, CASS: Cross Architectural Self-Supervision for Medical Image Analysis
  (code: ``loss_fn(x, y) = 2 - 2 * (normalize(x) * normalize(y)).sum(-1)`` on the two 1000-d outputs, gradients into
  both networks).
- [1] Grill et al., 2020, Bootstrap Your Own Latent (the normalised squared error ``2 - 2 cos``).
- [2] Singh et al., 2024, S4MI (Sci. Rep.), §Methods/Classification (CASS pre-training of ResNet-50 and ViT-B/16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["CASSLoss", "CASS_STOP_GRADIENT"]

CASS_STOP_GRADIENT = (None, "cnn", "vit")


class CASSLoss(_Loss):
    """``L_b = 2 - 2 cos(z_cnn,b, z_vit,b) = || z_cnn,b / |z_cnn,b| - z_vit,b / |z_vit,b| ||^2`` per sample, in [0, 4].

    As in the CASS code [0], the loss is symmetric and both outputs get a gradient (no stop-gradient, no predictor:
    the architectural asymmetry of the two networks is what CASS relies on against collapse). ``stop_gradient``
    detaches one branch for ablations (that branch becomes a fixed target). Normalisation is
    ``torch.nn.functional.normalize`` (eps 1e-12), as in the code.

    Lightly's ``NegativeCosineSimilarity`` gives ``-cos`` (the same gradient up to the factor 2) but has no
    ``reduction="none"`` and no stop-gradient switch, hence this small loss.

    Args:
        stop_gradient: None (CASS: gradients into both), ``"cnn"`` or ``"vit"`` (that output is detached).
        reduction: ``"mean"`` over the batch (CASS), ``"sum"`` or ``"none"`` (B,).
    """

    def __init__(self, stop_gradient: str | None = None, reduction: LossReduction | str = LossReduction.MEAN) -> None:
        valid = [r.value for r in LossReduction]
        if str(getattr(reduction, "value", reduction)) not in valid:
            raise ValueError(f"reduction must be one of {valid}, got {reduction!r}.")
        if stop_gradient not in CASS_STOP_GRADIENT:
            raise ValueError(f"stop_gradient must be one of {CASS_STOP_GRADIENT}, got {stop_gradient!r}.")
        super().__init__(reduction=LossReduction(reduction).value)
        self.stop_gradient = stop_gradient

    def forward(self, z_cnn: torch.Tensor, z_vit: torch.Tensor) -> torch.Tensor:
        """
        Args:
            z_cnn: (B, D) CNN outputs (CASS: the 1000-way head's logits).
            z_vit: (B, D) Transformer outputs for the same images.

        Returns:
            a scalar for ``"mean"``/``"sum"``, (B,) for ``"none"``.
        """
        if z_cnn.ndim != 2 or z_cnn.shape != z_vit.shape:
            raise ValueError(
                f"z_cnn and z_vit must both be (B, D) with one shape, got {tuple(z_cnn.shape)} and "
                f"{tuple(z_vit.shape)}; give both networks heads of the same width (CASSNetwork(projection_dim=...))."
            )
        if self.stop_gradient == "cnn":
            z_cnn = z_cnn.detach()
        elif self.stop_gradient == "vit":
            z_vit = z_vit.detach()
        loss = 2 - 2 * (F.normalize(z_cnn, dim=-1) * F.normalize(z_vit, dim=-1)).sum(dim=-1)
        if self.reduction == LossReduction.MEAN.value:
            return loss.mean()
        if self.reduction == LossReduction.SUM.value:
            return loss.sum()
        return loss
