"""Multi-task loss (vertebral CT paper, Eq. 4) against torch functional CE/MSE computed directly: weights, masking of
missing targets, zero weights, class weights, ignored trailing columns, gradients and errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_osteo.losses import MultiTaskLoss
from tests.utils import assert_allclose

C, P = 2, 18


def _batch(b=6, extra=0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(b, C + 1 + P + extra, generator=g, dtype=dtype)
    label = torch.randint(0, C, (b,), generator=g)
    bmd = torch.randn(b, generator=g, dtype=dtype)
    pos = torch.randint(0, P, (b,), generator=g)
    target = torch.stack([label.to(dtype), bmd, pos.to(dtype)], dim=1)
    return pred, target, label, bmd, pos


def _reference(pred, label, bmd, pos, w=(1.0, 1.0, 0.5), weight=None):
    return (
        w[0] * F.cross_entropy(pred[:, :C], label, weight=weight)
        + w[1] * F.mse_loss(pred[:, C], bmd)
        + w[2] * F.cross_entropy(pred[:, C + 1 : C + 1 + P], pos)
    )


@pytest.mark.parametrize("w", [(1.0, 1.0, 0.5), (0.3, 2.0, 1.7)])
def test_equals_weighted_sum_of_functional_losses(w):
    pred, target, label, bmd, pos = _batch()
    loss_fn = MultiTaskLoss(*w)
    loss = loss_fn(pred, target)
    assert loss.ndim == 0 and loss.dtype == pred.dtype
    assert_allclose(loss, _reference(pred, label, bmd, pos, w), rtol=1e-12)
    terms = loss_fn.last_terms
    assert set(terms) == {"class", "bmd", "position"} and all(isinstance(v, float) for v in terms.values())
    assert terms["class"] == pytest.approx(F.cross_entropy(pred[:, :C], label).item(), rel=1e-12)
    assert terms["bmd"] == pytest.approx(F.mse_loss(pred[:, C], bmd).item(), rel=1e-12)
    assert terms["position"] == pytest.approx(F.cross_entropy(pred[:, C + 1 :], pos).item(), rel=1e-12)


def test_paper_defaults():
    loss_fn = MultiTaskLoss()
    assert (loss_fn.w_class, loss_fn.w_bmd, loss_fn.w_position) == (1.0, 1.0, 0.5)
    assert (loss_fn.num_classes, loss_fn.num_positions, loss_fn.min_columns) == (2, 18, 21)


def test_masking_excludes_missing_records():
    pred, target, label, bmd, pos = _batch(b=8, seed=1)
    target[2, 1] = float("nan")  # missing BMD
    target[[0, 5], 0] = -1  # missing labels
    target[7, 2] = -1  # missing position
    keep_bmd = torch.tensor([i != 2 for i in range(8)])
    keep_cls = torch.tensor([i not in (0, 5) for i in range(8)])
    keep_pos = torch.tensor([i != 7 for i in range(8)])
    loss_fn = MultiTaskLoss()
    loss = loss_fn(pred, target)
    expected = (
        F.cross_entropy(pred[keep_cls, :C], label[keep_cls])
        + F.mse_loss(pred[keep_bmd, C], bmd[keep_bmd])
        + 0.5 * F.cross_entropy(pred[keep_pos, C + 1 :], pos[keep_pos])
    )
    assert_allclose(loss, expected, rtol=1e-12)


def test_all_missing_term_is_zero_finite_and_differentiable():
    pred, target, label, bmd, pos = _batch(seed=2)
    pred.requires_grad_(True)
    target[:, 1] = float("nan")  # no BMD at all
    target[:, 2] = -1  # no position at all
    loss_fn = MultiTaskLoss()
    loss = loss_fn(pred, target)
    assert torch.isfinite(loss)
    assert loss_fn.last_terms["bmd"] == 0.0 and loss_fn.last_terms["position"] == 0.0
    assert_allclose(loss, F.cross_entropy(pred[:, :C], label), rtol=1e-12)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert torch.count_nonzero(pred.grad[:, C:]) == 0  # nothing flows into columns without targets

    # every target missing: an exact, finite 0 that still backpropagates
    pred2 = pred.detach().clone().requires_grad_(True)
    none = torch.stack([-torch.ones(6), torch.full((6,), float("nan")), -torch.ones(6)], 1).to(pred2)
    loss2 = loss_fn(pred2, none)
    assert loss2.item() == 0.0 and loss2.requires_grad
    loss2.backward()
    assert torch.count_nonzero(pred2.grad) == 0


@pytest.mark.parametrize("w", [(1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.5), (0.0, 1.0, 0.0)])
def test_zero_weights_skip_terms(w):
    pred, target, label, bmd, pos = _batch(seed=3)
    target[[1, 4], 1] = float("nan")  # some BMD missing
    if w[1] == 0:
        target[:, 1] = float("nan")  # a skipped term does not need its targets at all
    if w[2] == 0:
        target[:, 2] = -1
    loss_fn = MultiTaskLoss(*w)
    loss = loss_fn(pred, target)
    valid = torch.isfinite(target[:, 1])
    expected = w[0] * F.cross_entropy(pred[:, :C], label)
    if w[1]:
        expected = expected + w[1] * F.mse_loss(pred[valid, C], bmd[valid])
    if w[2]:
        expected = expected + w[2] * F.cross_entropy(pred[:, C + 1 :], pos)
    assert_allclose(loss, expected, rtol=1e-12)
    for name, wi in zip(("class", "bmd", "position"), w):
        if wi == 0:
            assert loss_fn.last_terms[name] == 0.0


def test_class_weight_equals_weighted_cross_entropy():
    pred, target, label, bmd, pos = _batch(b=10, seed=4)
    weight = torch.tensor([0.3, 2.5], dtype=pred.dtype)
    loss = MultiTaskLoss(class_weight=[0.3, 2.5])(pred, target)
    assert_allclose(loss, _reference(pred, label, bmd, pos, weight=weight), rtol=1e-12)
    # with a missing label the weighted mean is over the remaining records (PyTorch's ignore_index semantics)
    target[1, 0] = -1
    ignore = label.clone()
    ignore[1] = -100
    loss_fn = MultiTaskLoss(class_weight=[0.3, 2.5])
    loss_fn(pred, target)
    assert loss_fn.last_terms["class"] == pytest.approx(F.cross_entropy(pred[:, :C], ignore, weight=weight).item())


def test_extra_columns_are_ignored():
    pred, target, *_ = _batch(extra=4, seed=5)
    pred.requires_grad_(True)
    loss_fn = MultiTaskLoss()
    loss = loss_fn(pred, target)
    assert_allclose(loss, loss_fn(pred[:, : C + 1 + P], target), rtol=1e-15)
    loss.backward()
    assert torch.count_nonzero(pred.grad[:, C + 1 + P :]) == 0


def test_gradient_flows_and_matches_reference():
    pred, target, label, bmd, pos = _batch(seed=6)
    a = pred.clone().requires_grad_(True)
    b = pred.clone().requires_grad_(True)
    MultiTaskLoss()(a, target).backward()
    _reference(b, label, bmd, pos).backward()
    assert_allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14)
    assert torch.count_nonzero(a.grad[:, :C]) > 0 and torch.count_nonzero(a.grad[:, C]) > 0


def test_float32_and_other_sizes():
    loss_fn = MultiTaskLoss(num_classes=3, num_positions=4)
    g = torch.Generator().manual_seed(7)
    pred = torch.randn(5, 3 + 1 + 4, generator=g)
    target = torch.tensor([[0, 0.1, 3], [2, -0.2, 0], [1, 1.5, 2], [2, 0.0, 1], [0, 2.0, 3]])
    loss = loss_fn(pred, target)
    assert loss.dtype == torch.float32
    expected = (
        F.cross_entropy(pred[:, :3], target[:, 0].long())
        + F.mse_loss(pred[:, 3], target[:, 1])
        + 0.5 * F.cross_entropy(pred[:, 4:], target[:, 2].long())
    )
    assert_allclose(loss, expected, rtol=1e-6)


def test_errors():
    loss_fn = MultiTaskLoss()
    with pytest.raises(ValueError, match=r"pred must be \(B, >= 21\)"):
        loss_fn(torch.zeros(4, 20), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"pred must be"):
        loss_fn(torch.zeros(4, 21, 1), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"target must be \(B, 3\)"):
        loss_fn(torch.zeros(4, 21), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"target must be \(B, 3\)"):
        loss_fn(torch.zeros(4, 21), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"label column must hold class indices in \[0, 1\]"):
        loss_fn(torch.zeros(2, 21), torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"position column must hold class indices in \[0, 17\]"):
        loss_fn(torch.zeros(2, 21), torch.tensor([[0.0, 0.0, 18.0], [0.0, 0.0, 1.5]]))
    with pytest.raises(ValueError, match="w_bmd must be a finite float >= 0"):
        MultiTaskLoss(w_bmd=-1.0)
    with pytest.raises(ValueError, match="num_positions must be an integer >= 2"):
        MultiTaskLoss(num_positions=1)
    with pytest.raises(ValueError, match="class_weight must be 2"):
        MultiTaskLoss(class_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="class_weight must be 2"):
        MultiTaskLoss(class_weight=[1.0, -2.0])
