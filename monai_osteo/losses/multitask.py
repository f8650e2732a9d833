"""Multi-task fine-tuning loss of the vertebral CT paper (Eq. 4): osteoporosis CE + BMD MSE + vertebral-position CE.

- [0] Huang, Guo et al., Opportunistic Osteoporosis Diagnosis via Texture-Preserving Self-Supervision, Mixture of
  Experts and Multi-Task Integration (``papers/vertebral_ct_tpswav_moe.txt``), §2.3 Eq. 4 and §3.1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["MultiTaskLoss"]


class MultiTaskLoss(torch.nn.Module):
    """Unified objective of [0], Eq. 4::

        L = w_class * CE(class logits, label) + w_bmd * MSE(bmd, BMD) + w_position * CE(position logits, position)

    The paper's ``alpha, beta, gamma = 1.0, 1.0, 0.5`` are ``w_class, w_bmd, w_position`` here (``alpha`` also names
    the MoE gate weights). The position task is the paper's 18-way classification of the vertebral level
    (T1-T12, L1-L6 as labels 1-18, here class indices 0-17) with plain CE, not ordinal regression. The BMD column is
    the standardised (z-scored with training statistics) areal BMD; the MSE is on that scale.

    Masking: each term averages over the records that have its target (a negative or NaN label/position, a NaN BMD
    is missing), so a record contributes only to the terms it has. A term with no valid record in the batch is an
    exact 0 that keeps the graph (no NaN, ``backward`` works). The masking is arithmetic (per-record losses times a
    0/1 mask), so no record is dropped by indexing. With ``class_weight`` the class term is PyTorch's weighted mean,
    ``sum_i w[y_i] * CE_i / sum_i w[y_i]`` over the valid records, i.e. ``F.cross_entropy(..., weight=...)``.

    A weight of 0 skips its term entirely (single-task ablations: ``w_bmd=0``, ``w_position=0``); the skipped term is
    not computed and is logged as 0.0. After each forward ``last_terms`` holds the three **unweighted** terms as
    detached floats (``{"class", "bmd", "position"}``), for logging.

    Why a plain ``torch.nn.Module`` and not MONAI's ``_Loss`` with ``reduction``: each term is a masked mean over its
    own set of valid records, so there is no per-record loss that a ``"none"``/``"sum"`` reduction could return.

    Args:
        w_class: weight of the osteoporosis classification CE (>= 0); paper 1.0.
        w_bmd: weight of the BMD regression MSE (>= 0); paper 1.0.
        w_position: weight of the vertebral-position CE (>= 0); paper 0.5.
        num_classes: number of diagnosis classes (>= 2); paper 2 (normal, osteoporosis).
        num_positions: number of vertebral positions (>= 2); paper 18 (T1-T12, L1-L6).
        class_weight: optional per-class weights (``num_classes`` non-negative floats) of the class CE; the paper
            uses none.
    """

    def __init__(
        self,
        w_class: float = 1.0,
        w_bmd: float = 1.0,
        w_position: float = 0.5,
        num_classes: int = 2,
        num_positions: int = 18,
        class_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("w_class", w_class), ("w_bmd", w_bmd), ("w_position", w_position)):
            if not (math.isfinite(float(value)) and value >= 0):
                raise ValueError(f"{name} must be a finite float >= 0 (0 skips the term), got {value!r}.")
        for name, value in (("num_classes", num_classes), ("num_positions", num_positions)):
            if int(value) != value or value < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}.")
        self.w_class = float(w_class)
        self.w_bmd = float(w_bmd)
        self.w_position = float(w_position)
        self.num_classes = int(num_classes)
        self.num_positions = int(num_positions)
        weight = None
        if class_weight is not None:
            weight = torch.as_tensor([float(w) for w in class_weight], dtype=torch.float64)  # cast to the logits
            if weight.shape != (self.num_classes,) or not bool(torch.all(weight >= 0)) or not weight.sum() > 0:
                raise ValueError(
                    f"class_weight must be {self.num_classes} (num_classes) non-negative floats, not all 0, "
                    f"got {class_weight!r}."
                )
        self.register_buffer("class_weight", weight, persistent=False)
        self.last_terms: dict[str, float] = {"class": 0.0, "bmd": 0.0, "position": 0.0}

    @property
    def min_columns(self) -> int:
        """Number of leading prediction columns the loss reads: ``num_classes + 1 + num_positions``."""
        return self.num_classes + 1 + self.num_positions

    def _masked_ce(self, logits: torch.Tensor, labels: torch.Tensor, num: int, name: str, weight=None) -> torch.Tensor:
        """Mean CE over the records whose label is valid (>= 0, not NaN); an exact graph-keeping 0 if none is."""
        valid = labels >= 0  # NaN compares False: missing
        bad = valid & ((labels >= num) | (labels != torch.floor(labels)))
        if bool(bad.any()):
            raise ValueError(
                f"target {name} column must hold class indices in [0, {num - 1}] (negative or NaN = missing), "
                f"got {labels[bad][:5].tolist()}."
            )
        index = torch.where(valid, labels, torch.zeros_like(labels)).long()
        per_record = F.cross_entropy(logits, index, reduction="none")  # finite for every row: masked below
        w = valid.to(per_record.dtype)
        if weight is not None:
            w = w * weight.to(per_record)[index]
        den = w.sum()
        num_sum = (per_record * w).sum()
        return torch.where(den > 0, num_sum / torch.where(den > 0, den, torch.ones_like(den)), num_sum * 0)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Eq. 4 of [0] on a batch.

        Args:
            pred: (B, num_classes + 1 + num_positions [+ E]) network output, columns ``[class logits | BMD
                (standardised) | position logits | anything else]``; trailing columns (e.g. MoE gate weights) are
                ignored.
            target: (B, 3) columns ``[label (class index, -1 = missing), BMD (standardised, NaN = missing),
                position index 0..num_positions-1 (-1 = missing)]``.

        Returns:
            a scalar tensor (dtype and device of ``pred``).
        """
        if not isinstance(pred, torch.Tensor) or pred.ndim != 2 or pred.shape[1] < self.min_columns:
            shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
            raise ValueError(
                f"pred must be (B, >= {self.min_columns}) = (B, num_classes + 1 + num_positions [+ extra]), "
                f"got {shape}; check num_classes={self.num_classes} and num_positions={self.num_positions}."
            )
        target = torch.as_tensor(target, device=pred.device)
        if target.ndim != 2 or target.shape != (pred.shape[0], 3):
            raise ValueError(
                f"target must be (B, 3) = [label, bmd, position] with B = {pred.shape[0]} as pred, "
                f"got {tuple(target.shape)}."
            )
        target = target.to(pred.dtype)
        c, p = self.num_classes, self.num_positions
        zero = pred[:, : self.min_columns].sum() * 0  # graph-keeping exact 0
        terms = {"class": zero, "bmd": zero, "position": zero}
        if self.w_class > 0:
            terms["class"] = self._masked_ce(pred[:, :c], target[:, 0], c, "label", self.class_weight)
        if self.w_bmd > 0:
            bmd, ref = pred[:, c], target[:, 1]
            valid = torch.isfinite(ref)
            sq = torch.where(valid, (bmd - torch.where(valid, ref, torch.zeros_like(ref))) ** 2, torch.zeros_like(bmd))
            terms["bmd"] = sq.sum() / valid.sum().clamp_min(1)  # exactly 0 (with a graph) when no BMD is valid
        if self.w_position > 0:
            terms["position"] = self._masked_ce(pred[:, c + 1 : c + 1 + p], target[:, 2], p, "position")
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        return self.w_class * terms["class"] + self.w_bmd * terms["bmd"] + self.w_position * terms["position"]
