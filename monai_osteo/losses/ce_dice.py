"""S4MI's supervised segmentation loss: ``0.5 (CE_w + Dice)`` with class weights on the cross-entropy only.

MONAI's ``DiceCELoss(weight=w)`` (1.6) applies ``w`` to the Dice term as well (``mean_c w_c d_c``), which is not the
loss of the S4MI / SSL4MIS code; this loss keeps MONAI's ``DiceLoss`` for the Dice term (softmax, squared
denominators, summed over the batch, background included: equal to SSL4MIS' ``DiceLoss``) and weights only
``torch.nn.functional.cross_entropy``.

- [0] Singh et al., 2024, S4MI, §Semi-supervised approach (``L_sup = ½ [Dice + CE]``); code
  ``train_CT_between_cnn_transformer_2D.py`` (``ce_loss`` with median-frequency weights, ``dice_loss``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch.nn.modules.loss import _Loss

__all__ = ["WeightedCEDiceLoss"]


class WeightedCEDiceLoss(_Loss):
    """``lambda_ce * CE(logits, y; weight) + lambda_dice * Dice(softmax(logits), onehot(y))``.

    Args:
        weight: per-class cross-entropy weights (C,) or None (unweighted); moved to the logits' device.
        lambda_ce: weight of the cross-entropy term (S4MI: 0.5).
        lambda_dice: weight of the Dice term (S4MI: 0.5).
        smooth_nr, smooth_dr: Dice smoothing (SSL4MIS: 1e-5 both).
    """

    def __init__(self, weight: torch.Tensor | Sequence[float] | None = None, lambda_ce: float = 0.5,
                 lambda_dice: float = 0.5, smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> None:
        super().__init__()
        self.weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        self.lambda_ce, self.lambda_dice = float(lambda_ce), float(lambda_dice)
        self.dice = DiceLoss(to_onehot_y=True, softmax=True, squared_pred=True, batch=True, include_background=True,
                             smooth_nr=smooth_nr, smooth_dr=smooth_dr)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: (B, C, *spatial) network outputs.
            target: (B, 1, *spatial) class indices (float or int).

        Returns:
            Scalar loss.
        """
        if target.ndim != logits.ndim or target.shape[1] != 1:
            raise ValueError(f"target must be (B, 1, *spatial) class indices matching logits {tuple(logits.shape)}, "
                             f"got {tuple(target.shape)}.")
        w = None if self.weight is None else self.weight.to(logits)
        if w is not None and w.numel() != logits.shape[1]:
            raise ValueError(f"weight has {w.numel()} classes but logits have {logits.shape[1]} channels.")
        ce = F.cross_entropy(logits, target[:, 0].long(), weight=w)
        return self.lambda_ce * ce + self.lambda_dice * self.dice(logits, target)
