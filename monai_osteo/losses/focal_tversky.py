"""Focal Tversky loss (Abraham & Khan 2019), the segmentation loss of MedSASS, built on MONAI's ``TverskyLoss``.

- [0] Abraham & Khan, 2019, A Novel Focal Tversky Loss Function with Improved Attention U-Net for Lesion
  Segmentation (ISBI), Eqs. 3-4.
- [1] Singh & Cirrone, MedSASS, §3.3.4 (focal Tversky loss on Otsu pseudo-masks, alpha 0.7, beta 0.3, gamma 4/3).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.losses import TverskyLoss
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["FocalTverskyLoss"]


class FocalTverskyLoss(_Loss):
    """Focal Tversky loss [0]: per class ``c`` (and per sample unless ``batch``)::

        TI_c = (sum p g + smooth_nr) / (sum p g + alpha_fn * sum (1 - p) g + beta_fp * sum p (1 - g) + smooth_dr)
        loss_c = (1 - TI_c) ** (1 / gamma)

    with sums over the spatial axes (and the batch axis when ``batch=True``). ``alpha_fn`` weights the **false
    negatives** and ``beta_fp`` the **false positives**, as in the paper; their best setting (and MedSASS's [1]) is
    ``alpha_fn=0.7, beta_fp=0.3, gamma=4/3`` (exponent 0.75). ``gamma=1`` is the Tversky loss. For ``gamma > 1`` and
    ``0 < 1 - TI < 1`` the focal term is larger than the Tversky loss, ``(1 - TI) ** (1 / gamma) > 1 - TI``, and
    the ratio ``(1 - TI) ** (1 / gamma - 1)`` is largest for well-segmented classes (TI near 1), whose gradient
    is amplified most.

    ``1 - TI`` is MONAI's ``TverskyLoss(alpha=beta_fp, beta=alpha_fn, reduction="none")`` (MONAI's ``alpha`` weights
    false positives, its ``beta`` false negatives). It is clamped at 0 (rounding can make it slightly negative)
    before the fractional power. The derivative of ``s ** (1 / gamma)`` is infinite at ``s = 0`` (perfect
    prediction, or an empty class predicted empty), and ``inf * 0`` in the chain rule would give NaN, so ``s <= 0``
    is routed through a ``torch.where`` with a safe base: the loss there is exactly 0 with a zero gradient (it is
    the minimum), and for ``s > 0`` it is exactly the formula; no epsilon is added.

    Why not MONAI's losses: ``TverskyLoss`` has no focal exponent; ``AsymmetricFocalTverskyLoss`` is binary-only,
    expects probabilities of two channels (background, foreground), always adds an unfocused background term
    ``1 - TI_bg``, parameterises the exponent as ``1 - gamma`` (its ``gamma=0.25`` is this ``gamma=4/3``), uses one
    ``epsilon`` for both smoothing terms and clamps the probabilities to ``[epsilon, 1 - epsilon]``. The MedSASS
    head is one sigmoid channel, whose foreground term alone is wanted.

    Reductions follow MONAI (``mean`` over classes and samples, where the paper sums over classes): ``"none"``
    returns MONAI ``TverskyLoss``'s shape, ``(B, C)``, or ``(C,)`` with ``batch=True``.

    Args:
        alpha_fn: weight of the false negatives (>= 0).
        beta_fp: weight of the false positives (>= 0).
        gamma: focal parameter (> 0); the exponent is ``1 / gamma``; the paper uses ``gamma`` in [1, 3].
        include_background: if False, channel 0 is dropped (ignored with a warning for one channel).
        to_onehot_y: convert a (B, 1, *spatial) label map to one-hot with C channels.
        sigmoid: apply a sigmoid to the input (MedSASS: one channel, ``sigmoid=True``).
        softmax: apply a softmax over the channels.
        other_act: another activation (callable), exclusive with ``sigmoid`` and ``softmax``.
        smooth_nr: added to the numerator of ``TI`` (>= 0).
        smooth_dr: added to the denominator of ``TI`` (>= 0).
        batch: sum over the batch axis too before dividing (one ``TI`` per class).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        alpha_fn: float = 0.7,
        beta_fp: float = 0.3,
        gamma: float = 4 / 3,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Callable | None = None,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        valid = [r.value for r in LossReduction]
        if str(getattr(reduction, "value", reduction)) not in valid:
            raise ValueError(f"reduction must be one of {valid}, got {reduction!r}.")
        super().__init__(reduction=LossReduction(reduction).value)
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0 (the exponent is 1 / gamma; the paper uses 4/3), got {gamma!r}.")
        for name, value in (
            ("alpha_fn", alpha_fn),
            ("beta_fp", beta_fp),
            ("smooth_nr", smooth_nr),
            ("smooth_dr", smooth_dr),
        ):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}.")
        self.alpha_fn = float(alpha_fn)
        self.beta_fp = float(beta_fp)
        self.gamma = float(gamma)
        self.tversky = TverskyLoss(
            include_background=include_background,
            to_onehot_y=to_onehot_y,
            sigmoid=sigmoid,
            softmax=softmax,
            other_act=other_act,
            alpha=self.beta_fp,  # MONAI: alpha weights false positives
            beta=self.alpha_fn,  # MONAI: beta weights false negatives
            reduction=LossReduction.NONE,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            batch=batch,
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Focal Tversky loss of a prediction.

        Args:
            input: (B, C, *spatial) logits (with ``sigmoid``/``softmax``) or probabilities.
            target: (B, C, *spatial) binary/one-hot masks, or (B, 1, *spatial) labels with ``to_onehot_y``.

        Returns:
            a scalar for ``"mean"``/``"sum"``; (B, C') or, with ``batch=True``, (C',) for ``"none"``, where C' is
            C, or C - 1 without background.
        """
        score = self.tversky(input, target)  # 1 - TI, per (B, C) or (C,)
        positive = score > 0
        base = torch.where(positive, score, torch.ones_like(score))  # safe base: no inf * 0 = NaN at TI >= 1
        loss = torch.where(positive, base ** (1.0 / self.gamma), torch.zeros_like(score))
        if self.reduction == LossReduction.MEAN.value:
            return loss.mean()
        if self.reduction == LossReduction.SUM.value:
            return loss.sum()
        return loss
