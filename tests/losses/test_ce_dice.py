"""WeightedCEDiceLoss equals S4MI/SSL4MIS' supervised loss 0.5 (CE_w + Dice), with the weights on the CE only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from monai_osteo.losses.ce_dice import WeightedCEDiceLoss
from tests.engines.test_cross_teaching import ssl4mis_dice


@pytest.mark.parametrize("weight", [None, [0.56, 5.0, 1.3]])
def test_equals_the_ssl4mis_formula_and_gradients(weight):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 3, 9, 7, generator=g, requires_grad=True)
    y = torch.randint(0, 3, (3, 1, 9, 7), generator=g).float()
    w = None if weight is None else torch.tensor(weight)
    ref = 0.5 * (F.cross_entropy(logits, y[:, 0].long(), weight=w) + ssl4mis_dice(torch.softmax(logits, 1), y))
    (g_ref,) = torch.autograd.grad(ref, logits)
    loss = WeightedCEDiceLoss(weight)(logits, y)
    (g_ours,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-8)


def test_differs_from_monai_dicece_with_weights_and_agrees_without():
    g = torch.Generator().manual_seed(1)
    logits, y = torch.randn(2, 2, 8, 8, generator=g), torch.randint(0, 2, (2, 1, 8, 8), generator=g).float()
    kw = dict(softmax=True, to_onehot_y=True, squared_pred=True, batch=True, lambda_dice=0.5, lambda_ce=0.5,
              smooth_nr=1e-5, smooth_dr=1e-5)
    torch.testing.assert_close(WeightedCEDiceLoss()(logits, y), DiceCELoss(**kw)(logits, y))
    w = torch.tensor([0.5, 4.0])
    assert not torch.isclose(WeightedCEDiceLoss(w)(logits, y), DiceCELoss(weight=w, **kw)(logits, y))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="B, 1"):
        WeightedCEDiceLoss()(torch.randn(2, 2, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="classes"):
        WeightedCEDiceLoss([1.0, 2.0, 3.0])(torch.randn(2, 2, 4, 4), torch.zeros(2, 1, 4, 4))
