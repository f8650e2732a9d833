"""Pure functions of the OT segmentation loss: pairwise costs, the exact capacity-constrained coupling, the KL term.

Costs compare N predicted hypotheses with M annotations of the same image, batched over images:

- ``soft_iou_cost``: the generalized-energy-distance metric ``d = 1 - IoU`` with soft intersection and union
  ``sum p y / sum (p + y - p y)`` per class, averaged over the classes present in the hypothesis or the
  annotation (a hypothesis "contains" a class where it is some pixel's most probable class, so with one-hot
  probabilities the cost is exactly the hard GED distance); classes absent from both are left out of the mean, and a
  pair with no class present costs 0 (two empty segmentations agree).
- ``cross_entropy_cost``: pixel-mean cross-entropy of the hypothesis against the annotation.

The coupling solves Eqs. 8-9 exactly: ``min <T, C>`` s.t. ``T >= 0``, ``T^T 1 = beta``, ``T 1 <= gamma 1``. The
inequality becomes an equality with a zero-cost slack column: row supplies ``gamma``, column demands
``[beta, N gamma - 1]``; POT's network simplex (``ot.emd``) solves that balanced problem exactly, and dropping the
slack column gives T*. Feasibility needs ``N gamma >= 1``; ``gamma >= 1`` removes the constraint (no row can carry
more than the total mass 1), leaving each annotation's mass on its cheapest hypothesis.

- [0] Hand X-ray osteoporosis journal paper (``papers/hand_xray_osteoporosis_journal.txt``), §"Optimal
  transport-based loss" and §"Imbalanced constraint relaxation", Eqs. 2-9.
- [1] Kohl et al., 2018, A probabilistic U-Net for segmentation of ambiguous images (GED with 1 - IoU).
- [2] Flamary et al., 2021, POT: Python Optimal Transport (``ot.emd``).
"""

from __future__ import annotations

import numpy as np
import ot
import torch

__all__ = [
    "batch_capacity_constrained_coupling",
    "capacity_constrained_coupling",
    "cross_entropy_cost",
    "kl_divergence",
    "one_hot_flat",
    "soft_iou_cost",
]


def one_hot_flat(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, M, *spatial) integer labels -> (B, M, C, P) one-hot with flattened pixels (P = prod(spatial)).

    Built by ``scatter_`` straight into ``dtype`` (no int64 one-hot intermediate).
    """
    b, m = labels.shape[0], labels.shape[1]
    idx = labels.reshape(b, m, 1, -1).long()
    return torch.zeros(b, m, num_classes, idx.shape[-1], dtype=dtype, device=labels.device).scatter_(2, idx, 1.0)


def soft_iou_cost(
    probs: torch.Tensor, labels: torch.Tensor, include_background: bool = False, eps: float = 1e-8
) -> torch.Tensor:
    """Pairwise ``1 - mean_c IoU_c`` between soft hypotheses and hard annotations (see the module docstring).

    Args:
        probs: (B, N, C, *spatial) class probabilities of N hypotheses (softmax over C).
        labels: (B, M, *spatial) integer annotations in ``[0, C)``.
        include_background: also average over class 0.
        eps: floor of the union.

    Returns:
        (B, N, M) costs in [0, 1], differentiable in ``probs``.
    """
    b, n, c = probs.shape[0], probs.shape[1], probs.shape[2]
    p = probs.reshape(b, n, c, -1)
    y = one_hot_flat(labels, c, p.dtype)
    inter = torch.einsum("bncp,bmcp->bnmc", p, y)
    sum_p, sum_y = p.sum(-1), y.sum(-1)
    union = (sum_p[:, :, None] + sum_y[:, None] - inter).clamp_min(eps)
    pd = p.detach()
    in_p = (pd >= pd.amax(2, keepdim=True)).any(-1)  # (B, N, C): class is a pixel's argmax (faster than argmax)
    present = in_p[:, :, None] | (sum_y > 0)[:, None]  # (B, N, M, C)
    first = 0 if include_background else 1
    present = present[..., first:]
    dist = (1.0 - inter / union)[..., first:]
    count = present.sum(-1).clamp_min(1)
    return (dist * present).sum(-1) / count


def cross_entropy_cost(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Pairwise pixel-mean cross-entropy ``-mean_x log softmax(s_i)[y_j(x)]`` (all classes, background included).

    Args:
        logits: (B, N, C, *spatial) logits of N hypotheses.
        labels: (B, M, *spatial) integer annotations in ``[0, C)``.

    Returns:
        (B, N, M) costs >= 0, differentiable in ``logits``.
    """
    b, n, c = logits.shape[0], logits.shape[1], logits.shape[2]
    logp = torch.log_softmax(logits, dim=2).reshape(b, n, c, -1)
    y = one_hot_flat(labels, c, logp.dtype)
    return -torch.einsum("bncp,bmcp->bnm", logp, y) / logp.shape[-1]


def capacity_constrained_coupling(cost: np.ndarray, beta: np.ndarray, gamma: float) -> np.ndarray:
    """Exact ``argmin_T <T, C>`` s.t. ``T >= 0, T^T 1 = beta, T 1 <= gamma 1`` (Eqs. 8-9) with ``ot.emd``.

    Args:
        cost: (N, M) costs.
        beta: (M,) annotation weights, >= 0, summing to 1.
        gamma: row capacity, ``>= 1 / N``; ``>= 1`` means unconstrained rows.

    Returns:
        (N, M) float64 coupling.
    """
    cost = np.asarray(cost, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if cost.ndim != 2 or beta.shape != (cost.shape[1],):
        raise ValueError(f"cost must be (N, M) and beta (M,), got {cost.shape} and {beta.shape}.")
    if not np.all(np.isfinite(cost)):
        raise ValueError("cost must be finite; check the predictions for NaN/inf.")
    n = cost.shape[0]
    if np.any(beta < 0) or abs(beta.sum() - 1.0) > 1e-5:
        raise ValueError(f"beta must be >= 0 and sum to 1, got {beta.tolist()}; normalise the annotation weights.")
    if gamma * n < 1.0 - 1e-9:
        raise ValueError(
            f"gamma must be >= 1/N = {1.0 / n:.6g} for N = {n} hypotheses (they must carry the total mass 1 with at "
            f"most gamma each), got {gamma!r}; raise gamma or draw more samples."
        )
    cap = min(float(gamma), 1.0)
    supply = np.full(n, cap)
    slack = n * cap - 1.0
    if slack <= 1e-12:  # gamma = 1/N: every row carries exactly gamma, a balanced problem without slack
        return ot.emd(supply, beta * (supply.sum() / beta.sum()), cost)
    demand = np.append(beta / beta.sum(), slack)
    demand *= supply.sum() / demand.sum()  # exact balance in floating point, every entry stays >= 0
    plan = ot.emd(supply, demand, np.hstack([cost, np.zeros((n, 1))]))
    return plan[:, :-1]


@torch.no_grad()
def batch_capacity_constrained_coupling(cost: torch.Tensor, beta: torch.Tensor, gamma: float) -> torch.Tensor:
    """:func:`capacity_constrained_coupling` per image, without gradients.

    Args:
        cost: (B, N, M) costs.
        beta: (B, M) annotation weights.
        gamma: row capacity.

    Returns:
        (B, N, M) coupling on the device and in the dtype of ``cost``.
    """
    c = cost.detach().to("cpu", torch.float64).numpy()
    w = beta.detach().to("cpu", torch.float64).numpy()
    plans = np.stack([capacity_constrained_coupling(c[i], w[i], gamma) for i in range(c.shape[0])])
    return torch.as_tensor(plans).to(device=cost.device, dtype=cost.dtype)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``KL(p || q) = sum p log(p / q)`` over the last axis, ``0 log 0 = 0``, ``q`` clamped to ``>= eps``.

    Args:
        p: (..., N) target distribution (no gradient needed).
        q: (..., N) model distribution.
        eps: floor of ``q``.

    Returns:
        (...) divergences.
    """
    return (torch.xlogy(p, p) - p * torch.log(q.clamp_min(eps))).sum(-1)
