"""Multi-crop self-supervised loss over the outputs of :class:`~monai_osteo.networks.nets.ssl_net.SSLNetwork`.

Reuses lightly's NT-Xent, VICReg and SwaV losses and this package's SupCon loss; only the multi-crop pairing is
ours.

- [0] Chen et al., 2020, A Simple Framework for Contrastive Learning of Visual Representations (SimCLR).
- [1] Khosla et al., 2020, Supervised Contrastive Learning.
- [2] Caron et al., 2020, Unsupervised Learning of Visual Features by Contrasting Cluster Assignments (SwaV,
  multi-crop).
- [3] Bardes et al., 2022, VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning.
"""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss, SwaVLoss, VICRegLoss

from monai_osteo.losses.supcon import SupConLoss

__all__ = ["MultiCropSSLLoss"]

METHODS = ("simclr", "supcon", "swav", "vicreg")


class MultiCropSSLLoss(torch.nn.Module):
    """Self-supervised loss for ``num_global`` global views followed by any number of local views.

    - ``"simclr"``: mean over the ordered pairs ``(i, j)``, ``i`` a global view, ``j`` any other view, of
      ``NTXentLoss(temperature)(z_i, z_j)`` on the projections (with 2 views: exactly ``NTXentLoss(z_0, z_1)``).
    - ``"vicreg"``: the same pairing with ``VICRegLoss(lambda_param, mu_param, nu_param)``.
    - ``"supcon"``: :class:`~monai_osteo.losses.supcon.SupConLoss` (temperature, no rescaling) over all views'
      projections stacked to (B, V, P), with ``labels`` (negative = unlabelled; None = all unlabelled).
    - ``"swav"``: ``SwaVLoss`` with the global views' prototype scores as high-resolution and the others as
      low-resolution outputs (codes from Sinkhorn on the global views only).

    Args:
        method: one of ``"simclr"``, ``"supcon"``, ``"swav"``, ``"vicreg"``; must match the ``SSLNetwork``.
        num_global: number of global (high-resolution) views, which come first in the view list.
        temperature: NT-Xent / SupCon temperature.
        sinkhorn_iterations: SwaV Sinkhorn iterations.
        sinkhorn_epsilon: SwaV Sinkhorn entropic regularisation.
        swav_temperature: SwaV cross-entropy temperature.
        lambda_param: VICReg invariance weight.
        mu_param: VICReg variance weight.
        nu_param: VICReg covariance weight.
        gather_distributed: gather across ranks (negatives for NT-Xent/SupCon, statistics for VICReg, Sinkhorn
            marginals for SwaV).
    """

    def __init__(
        self,
        method: str = "simclr",
        num_global: int = 2,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        sinkhorn_epsilon: float = 0.05,
        swav_temperature: float = 0.1,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
        if isinstance(num_global, bool) or not isinstance(num_global, int) or num_global < 1:
            raise ValueError(f"num_global must be an int >= 1 (global views come first), got {num_global!r}.")
        self.method = method
        self.num_global = num_global
        self.criterion: torch.nn.Module
        if method == "simclr":
            self.criterion = NTXentLoss(temperature=temperature, gather_distributed=gather_distributed)
        elif method == "vicreg":
            self.criterion = VICRegLoss(lambda_param, mu_param, nu_param, gather_distributed=gather_distributed)
        elif method == "supcon":
            self.criterion = SupConLoss(temperature=temperature, gather_distributed=gather_distributed)
        else:
            self.criterion = SwaVLoss(
                temperature=swav_temperature,
                sinkhorn_iterations=sinkhorn_iterations,
                sinkhorn_epsilon=sinkhorn_epsilon,
                sinkhorn_gather_distributed=gather_distributed,
            )

    def forward(self, outputs: dict, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Compute the loss.

        Args:
            outputs: ``SSLNetwork`` output: ``"projections"``, ``V`` tensors (B, P); for ``"swav"`` also
                ``"prototypes"``, ``V`` tensors (B, K).
            labels: (B,) integer labels for ``"supcon"`` (negative = unlabelled); ignored by the other methods.

        Returns:
            Scalar loss.
        """
        key = "prototypes" if self.method == "swav" else "projections"
        if key not in outputs:
            raise ValueError(
                f"outputs must hold {key!r} (keys {sorted(outputs)!r}); build SSLNetwork with method={self.method!r}."
            )
        views = list(outputs[key])
        n_views = len(views)
        if n_views < 2 or n_views < self.num_global:
            raise ValueError(
                f"outputs[{key!r}] must hold at least max(2, num_global={self.num_global}) views, got {n_views}."
            )
        if self.method == "supcon":
            return self.criterion(torch.stack(views, dim=1), labels)
        if self.method == "swav":
            loss = self.criterion(views[: self.num_global], views[self.num_global :])
            return loss.reshape(())
        losses = [
            self.criterion(views[i], views[j]) for i in range(self.num_global) for j in range(n_views) if j != i
        ]
        return torch.stack(losses).mean()
