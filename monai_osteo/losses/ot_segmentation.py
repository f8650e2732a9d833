"""Optimal-transport segmentation loss with imbalanced constraint relaxation (hand paper, Eqs. 7-9).

Per image, N = K x S weighted hypotheses (weights alpha) are matched to M annotations (weights beta) by the exact
coupling ``T* = argmin <T, C>`` s.t. ``T >= 0, T^T 1 = beta, T 1 <= gamma 1`` (no gradient), and the loss is

    ``sum_ij T*_ij C_ij + lam * KL(T* 1 || alpha)``.

The first term trains encoder and decoders through the costs (T* is a constant); the second is the only path to
the router: ``T* 1`` is a pseudo-label that tells ``alpha`` how much mass each hypothesis should carry, and the
costs do not depend on ``alpha``. ``gamma`` starts below 1 so that mass spreads over hypotheses early in training,
and is annealed to 1 (a handler sets ``loss.gamma``).

- [0] Hand X-ray osteoporosis journal paper (``papers/hand_xray_osteoporosis_journal.txt``), §"Optimal
  transport-based loss", §"Imbalanced constraint relaxation", Eqs. 2-9.
- [1] Gao et al., 2023, Modeling multimodal aleatoric uncertainty in segmentation with mixture of stochastic experts
  (their code uses a greedy coupling; this one is exact).
"""

from __future__ import annotations

import math

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from monai_osteo.losses.functional.ot import (
    batch_capacity_constrained_coupling,
    cross_entropy_cost,
    kl_divergence,
    soft_iou_cost,
)

__all__ = ["OTSegmentationLoss"]

COSTS = ("iou", "ce", "iou+ce")


class OTSegmentationLoss(_Loss):
    """Exact capacity-constrained OT between predicted hypotheses and annotator masks, plus the router KL term.

    Args:
        gamma: row capacity of the coupling, ``1/N <= gamma``; ``gamma >= 1`` is unconstrained. Settable attribute.
        lam: weight of ``KL(T* 1 || alpha)``. Settable attribute.
        cost: ``"iou"`` (soft ``1 - IoU``, the GED metric, averaged over the classes present in either mask, see
            :func:`~monai_osteo.losses.functional.ot.soft_iou_cost`), ``"ce"`` (pixel-mean cross-entropy) or
            ``"iou+ce"`` (their sum). The soft IoU's gradient on a class's logit is proportional to its probability:
            a class whose probability collapses early (observed: M1, the angled thumb metacarpal, Dice 0.00 after
            60 epochs at every size tried) never recovers; the cross-entropy term keeps its gradient (p - y).
        include_background: include class 0 in the IoU average (``"iou"`` only). Default True: without the
            background term the softmax mass of background pixels can settle on a foreground class, whose IoU
            gradient there is only ~inter/union^2 (observed: a U-Net labelling all background as M1).
        reduction: over the batch, ``"mean"``, ``"sum"`` or ``"none"``.
        eps: floor of ``alpha`` in the KL term and of the IoU union.

    Attributes:
        last: detached tensors of the last call, for logging: ``"cost"`` (transport term) and ``"kl"`` reduced like
            the loss, ``"coupling"`` and ``"cost_matrix"`` (B, N, M), ``"row_marginal"`` (B, N) ``= T* 1``.
    """

    def __init__(
        self,
        gamma: float = 1.0,
        lam: float = 1.0,
        cost: str = "iou",
        include_background: bool = True,
        reduction: LossReduction | str = LossReduction.MEAN,
        eps: float = 1e-8,
    ):
        super().__init__(reduction=LossReduction(reduction).value)
        if cost not in COSTS:
            raise ValueError(f"cost must be one of {COSTS}, got {cost!r}.")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam!r}.")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0 (and >= 1/N at call time), got {gamma!r}.")
        self.gamma = float(gamma)
        self.lam = float(lam)
        self.cost = cost
        self.include_background = include_background
        self.eps = eps
        self.last: dict[str, torch.Tensor] = {}

    def cost_matrix(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(B, N, C, *spatial) logits and (B, M, *spatial) labels -> (B, N, M) differentiable costs."""
        if self.cost == "ce":
            return cross_entropy_cost(logits, masks)
        iou = soft_iou_cost(torch.softmax(logits, dim=2), masks, self.include_background, self.eps)
        return iou + cross_entropy_cost(logits, masks) if self.cost == "iou+ce" else iou

    def forward(
        self, logits: torch.Tensor, alpha: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """
        Args:
            logits: (B, K, S, C, *spatial) per-sample logits (or (B, N, C, *spatial)); leading dims match ``alpha``.
            alpha: (B, K, S) or (B, N) hypothesis weights summing to 1 per image.
            masks: (B, M, *spatial) annotations, integer labels in ``[0, C)`` (integral floats are accepted).
            weights: (B, M) annotation weights beta summing to 1 per image; None = uniform.

        Returns:
            the loss, a scalar, or (B,) with ``reduction="none"``.
        """
        logits, alpha, masks, weights = self._check(logits, alpha, masks, weights)
        cost = self.cost_matrix(logits, masks)
        coupling = batch_capacity_constrained_coupling(cost, weights, self.gamma)
        transport = (coupling * cost).sum((1, 2))
        row = coupling.sum(2)
        kl = kl_divergence(row, alpha, self.eps)
        loss = transport + self.lam * kl
        self.last = {
            "cost": self._reduce(transport).detach(),
            "kl": self._reduce(kl).detach(),
            "coupling": coupling,
            "cost_matrix": cost.detach(),
            "row_marginal": row,
        }
        return self._reduce(loss)

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.reduction == LossReduction.MEAN.value:
            return x.mean()
        if self.reduction == LossReduction.SUM.value:
            return x.sum()
        return x

    def _check(self, logits, alpha, masks, weights):
        """Validate shapes and values; flatten hypotheses to N; return (B, N, C, *sp), (B, N), long masks, beta."""
        a = alpha.dim()
        if a < 2 or logits.dim() < a + 2 or tuple(logits.shape[:a]) != tuple(alpha.shape):
            raise ValueError(
                f"logits must be (B, K, S, C, *spatial) with leading dims equal to alpha's (B, K, S), got logits "
                f"{tuple(logits.shape)} and alpha {tuple(alpha.shape)}; pass the network's 'logits' and 'alpha'."
            )
        b, n = alpha.shape[0], math.prod(alpha.shape[1:])
        num_classes, spatial = logits.shape[a], tuple(logits.shape[a + 1 :])
        logits = logits.reshape((b, n, num_classes) + spatial)
        alpha = alpha.reshape(b, n)
        if masks.dim() != len(spatial) + 2 or masks.shape[0] != b or tuple(masks.shape[2:]) != spatial:
            raise ValueError(
                f"masks must be (B, M, *spatial) = ({b}, M, {', '.join(map(str, spatial))}), got "
                f"{tuple(masks.shape)}; squeeze a channel axis of size 1 if there is one."
            )
        if masks.is_floating_point():
            if not torch.equal(masks, masks.round()):
                raise ValueError("masks must hold integer class labels, got non-integral floats.")
        masks = masks.long()
        lo, hi = int(masks.min()), int(masks.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"mask labels must lie in [0, {num_classes - 1}] for C = {num_classes} classes, got [{lo}, {hi}]."
            )
        m = masks.shape[1]
        if weights is None:
            weights = alpha.new_full((b, m), 1.0 / m)
        elif tuple(weights.shape) != (b, m):
            raise ValueError(f"weights must be (B, M) = ({b}, {m}), got {tuple(weights.shape)}.")
        if self.gamma * n < 1.0 - 1e-9:
            raise ValueError(
                f"gamma must be >= 1/N = {1.0 / n:.6g} for N = {n} hypotheses, got {self.gamma!r}; raise gamma "
                "(e.g. the annealing start) or draw more samples."
            )
        return logits, alpha, masks, weights
