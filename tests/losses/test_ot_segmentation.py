"""OT segmentation loss: exact coupling against scipy's LP (capacity form, no slack) and POT, marginals and capacity,
gamma = 1 as column-wise minimum, costs by hand, loss = transport + lam KL, gradient routing, errors."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linprog

from monai_osteo.losses import OTSegmentationLoss
from monai_osteo.losses.functional import (
    batch_capacity_constrained_coupling,
    capacity_constrained_coupling,
    cross_entropy_cost,
    kl_divergence,
    soft_iou_cost,
)
from monai_osteo.networks.nets import MultiDecoderOTUNet
from tests.utils import assert_allclose


def capacity_lp(cost: np.ndarray, beta: np.ndarray, gamma: float) -> float:
    """Independent oracle: min <T, C> s.t. T >= 0, T^T 1 = beta, T 1 <= gamma, solved by HiGHS as written."""
    n, m = cost.shape
    a_eq = np.kron(np.ones((1, n)), np.eye(m))  # column sums (T flattened row-major)
    a_ub = np.kron(np.eye(n), np.ones((1, m)))  # row sums
    res = linprog(cost.ravel(), A_ub=a_ub, b_ub=np.full(n, gamma), A_eq=a_eq, b_eq=beta, bounds=(0, None),
                  method="highs")
    assert res.status == 0, res.message
    return float(res.fun)


def random_problems():
    rng = np.random.default_rng(0)
    for n, m in [(4, 1), (4, 3), (8, 4), (16, 4), (16, 5)]:
        for gamma in (1.0 / n, rng.uniform(1.0 / n, 1.0), 0.5, 1.0):
            yield rng.random((n, m)), rng.dirichlet(np.ones(m)), max(float(gamma), 1.0 / n)


@pytest.mark.parametrize("cost, beta, gamma", list(random_problems()))
def test_coupling_is_lp_optimum_with_marginals_and_capacity(cost, beta, gamma):
    plan = capacity_constrained_coupling(cost, beta, gamma)
    value = float((plan * cost).sum())
    assert abs(value - capacity_lp(cost, beta, gamma)) <= 1e-6
    n, m = cost.shape
    slack = max(n * gamma - 1.0, 0.0)
    pot = ot.emd2(np.full(n, gamma), np.append(beta, slack), np.hstack([cost, np.zeros((n, 1))]))
    assert abs(value - pot) <= 1e-6
    assert plan.min() >= -1e-12
    assert_allclose(plan.sum(0), beta, atol=1e-9)
    assert plan.sum(1).max() <= gamma + 1e-9


def test_gamma_one_is_columnwise_minimum_and_gamma_min_is_balanced_ot():
    rng = np.random.default_rng(1)
    for _ in range(5):
        cost, beta = rng.random((16, 4)), rng.dirichlet(np.ones(4))
        expected = float((beta * cost.min(0)).sum())
        for gamma in (1.0, 3.0):
            assert abs(float((capacity_constrained_coupling(cost, beta, gamma) * cost).sum()) - expected) <= 1e-9
        plan = capacity_constrained_coupling(cost, beta, 1.0 / 16)  # every row full: alpha forced uniform
        assert_allclose(plan.sum(1), np.full(16, 1.0 / 16), atol=1e-12)
        assert abs(float((plan * cost).sum()) - ot.emd2(np.full(16, 1.0 / 16), beta, cost)) <= 1e-9


def test_batch_coupling_matches_per_image_and_follows_dtype():
    rng = np.random.default_rng(2)
    cost, beta = torch.tensor(rng.random((3, 6, 2)), dtype=torch.float32), torch.tensor(rng.dirichlet([1, 1], 3))
    plans = batch_capacity_constrained_coupling(cost, beta, 0.4)
    assert plans.dtype == torch.float32 and plans.shape == (3, 6, 2)
    for i in range(3):
        assert_allclose(plans[i], capacity_constrained_coupling(cost[i].double().numpy(), beta[i].numpy(), 0.4),
                        atol=1e-7)


def test_soft_iou_cost_by_hand():
    # 1 image, 2 pixels, C = 3; hypothesis probs per pixel, annotation labels [1, 2]
    probs = torch.tensor([[0.2, 0.2], [0.7, 0.3], [0.1, 0.5]]).reshape(1, 1, 3, 2)
    labels = torch.tensor([1, 2]).reshape(1, 1, 2)
    iou1 = 0.7 / (0.7 + 0.3 + 1.0 - 0.7)  # class 1: inter 0.7, sum p 1.0, sum y 1
    iou2 = 0.5 / (0.1 + 0.5 + 1.0 - 0.5)
    assert_allclose(soft_iou_cost(probs, labels), [[[1.0 - (iou1 + iou2) / 2]]], rtol=1e-6)
    # background is nowhere the argmax and absent from the annotation: excluded even with include_background
    assert_allclose(soft_iou_cost(probs, labels, include_background=True), [[[1.0 - (iou1 + iou2) / 2]]], rtol=1e-6)
    probs_bg = torch.tensor([[0.6, 0.2], [0.3, 0.3], [0.1, 0.5]]).reshape(1, 1, 3, 2)  # background argmax at pixel 0
    i0, i1, i2 = 0.0, 0.3 / (0.6 + 1.0 - 0.3), 0.5 / (0.6 + 1.0 - 0.5)  # background now counts, with IoU 0
    assert_allclose(soft_iou_cost(probs_bg, labels, include_background=True), [[[1.0 - (i0 + i1 + i2) / 3]]],
                    rtol=1e-6)


def test_soft_iou_cost_hard_masks():
    rng = np.random.default_rng(3)
    labels = torch.as_tensor(rng.integers(0, 4, (2, 3, 8, 8)))
    onehot = F.one_hot(labels, 4).movedim(-1, 2).float()  # (B, M, C, H, W) used as N = M hypotheses
    cost = soft_iou_cost(onehot, labels)
    assert_allclose(torch.diagonal(cost, dim1=1, dim2=2), torch.zeros(2, 3), atol=1e-7)
    a, b = labels[0, 0], labels[0, 1]
    ious = [((a == c) & (b == c)).sum() / ((a == c) | (b == c)).sum() for c in range(1, 4)
            if ((a == c) | (b == c)).any()]
    assert_allclose(cost[0, 0, 1], 1.0 - float(sum(ious)) / len(ious), rtol=1e-6)
    empty = torch.zeros(1, 1, 4, 4, dtype=torch.long)  # background only in both: no class present -> cost 0
    assert_allclose(soft_iou_cost(F.one_hot(empty, 3).movedim(-1, 2).float(), empty), [[[0.0]]])


def test_cross_entropy_cost_matches_torch():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 3, 4, 5, 6), torch.randint(0, 4, (2, 2, 5, 6))
    cost = cross_entropy_cost(logits, labels)
    for b in range(2):
        for i in range(3):
            for j in range(2):
                assert_allclose(cost[b, i, j], F.cross_entropy(logits[b, i][None], labels[b, j][None]), rtol=1e-5)


def test_loss_value_reduction_and_last():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 3, 3, 8, 8, dtype=torch.float64)
    alpha = torch.softmax(torch.randn(2, 2), 1)[:, :, None].expand(2, 2, 3) / 3
    masks, beta = torch.randint(0, 3, (2, 2, 8, 8)), torch.tensor([[0.3, 0.7], [0.5, 0.5]], dtype=torch.float64)
    loss_fn = OTSegmentationLoss(gamma=0.3, lam=0.5, reduction="none")
    loss = loss_fn(logits, alpha, masks, beta)
    assert loss.shape == (2,) and loss.dtype == torch.float64
    cost = soft_iou_cost(torch.softmax(logits.flatten(1, 2), 2), masks, include_background=True)  # loss default
    plan = batch_capacity_constrained_coupling(cost, beta, 0.3)
    expected = (plan * cost).sum((1, 2)) + 0.5 * kl_divergence(plan.sum(2), alpha.flatten(1))
    assert_allclose(loss, expected, rtol=1e-12)
    last = loss_fn.last
    assert last["coupling"].shape == last["cost_matrix"].shape == (2, 6, 2)
    assert not any(v.requires_grad for v in last.values())
    assert last["row_marginal"].max() <= 0.3 + 1e-9
    loss_fn.reduction = "sum"
    assert_allclose(loss_fn(logits, alpha, masks, beta), expected.sum(), rtol=1e-12)
    loss_fn.reduction = "mean"
    assert_allclose(loss_fn(logits, alpha, masks, beta), expected.mean(), rtol=1e-12)
    assert_allclose(loss_fn.last["cost"], (plan * cost).sum((1, 2)).mean(), rtol=1e-12)
    loss_fn.gamma = 1.0  # annealed: each annotation on its cheapest hypothesis
    loss_fn(logits, alpha, masks, None)
    assert_allclose(loss_fn.last["cost"], (0.5 * cost.amin(1)).sum(1).mean(), rtol=1e-12)
    ce = OTSegmentationLoss(cost="ce", lam=0.0)(logits, alpha, masks, beta)
    assert ce.item() > 0 and math.isfinite(ce.item())


def test_gradients_router_only_through_kl_decoders_only_through_cost():
    torch.manual_seed(0)
    net = MultiDecoderOTUNet(channels=(4, 8), out_channels=3, num_decoders=2, num_samples=2, latent_dim=2,
                             head_channels=4, router_hidden=4)
    x, masks = torch.randn(2, 1, 16, 16), torch.randint(0, 3, (2, 3, 16, 16))
    router = list(net.router.parameters())
    decoders = list(net.branches.parameters()) + list(net.latent.parameters())

    out = net(x)
    loss_fn = OTSegmentationLoss(gamma=0.5, lam=0.0)
    loss_fn(out["logits"], out["alpha"], masks).backward()
    assert all(p.grad is None or not p.grad.any() for p in router)
    assert all(p.grad is not None for p in decoders) and any(p.grad.abs().sum() > 0 for p in decoders)

    net.zero_grad(set_to_none=True)
    out = net(x)
    loss_fn.lam = 1.0
    total = loss_fn(out["logits"], out["alpha"], masks)
    kl = kl_divergence(loss_fn.last["row_marginal"], out["alpha"].flatten(1)).mean()
    assert_allclose(total - loss_fn.last["cost"], kl, rtol=1e-6)
    grads = torch.autograd.grad(kl, decoders + router, allow_unused=True, retain_graph=True)
    assert all(g is None for g in grads[: len(decoders)])
    assert any(g is not None and g.abs().sum() > 0 for g in grads[len(decoders):])


def test_errors():
    logits, alpha = torch.randn(1, 2, 2, 3, 4, 4), torch.full((1, 2, 2), 0.25)
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="gamma must be >= 1/N"):
        OTSegmentationLoss(gamma=0.2)(logits, alpha, masks)
    with pytest.raises(ValueError, match="gamma must be >= 1/N"):
        capacity_constrained_coupling(np.zeros((4, 2)), np.array([0.5, 0.5]), 0.1)
    with pytest.raises(ValueError, match="cost must be one of"):
        OTSegmentationLoss(cost="dice")
    with pytest.raises(ValueError, match="masks must be"):
        OTSegmentationLoss()(logits, alpha, masks[:, :, None])
    with pytest.raises(ValueError, match=r"mask labels must lie in \[0, 2\]"):
        OTSegmentationLoss()(logits, alpha, masks + 3)
    with pytest.raises(ValueError, match="integer class labels"):
        OTSegmentationLoss()(logits, alpha, masks.float() + 0.5)
    with pytest.raises(ValueError, match="leading dims equal to alpha"):
        OTSegmentationLoss()(logits, alpha[:, :1], masks)
    with pytest.raises(ValueError, match="weights must be"):
        OTSegmentationLoss()(logits, alpha, masks, torch.ones(1, 3) / 3)
    with pytest.raises(ValueError, match="beta must be >= 0 and sum to 1"):
        OTSegmentationLoss()(logits, alpha, masks, torch.tensor([[0.5, 0.6]]))


def test_coupling_is_feasible_with_float32_weights_and_gamma_at_its_bounds():
    import warnings

    from monai_osteo.losses.functional.ot import capacity_constrained_coupling

    beta = np.array([0.6659, 0.2110, 0.1231], dtype=np.float32).astype(np.float64)  # sums to 1 only in float32
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # POT warns "Problem infeasible" when the marginals do not balance
        single = capacity_constrained_coupling(rng.random((1, 3)), beta, 1.0)  # N = 1: the single-decoder baseline
        tight = capacity_constrained_coupling(rng.random((4, 3)), beta, 0.25)  # gamma = 1/N
    np.testing.assert_allclose(single[0], beta, atol=1e-12)
    np.testing.assert_allclose(tight.sum(1), 0.25, atol=1e-12)
    np.testing.assert_allclose(tight.sum(0), beta, atol=1e-12)


def test_default_cost_pulls_background_back_from_a_foreground_class_that_swallowed_it():
    # 64x64 image with a 4x4 bone of class 1 and one of class 2; the prediction labels all background as class 1
    labels = torch.zeros(1, 1, 64, 64, dtype=torch.long)
    labels[..., :4, :4], labels[..., -4:, -4:] = 1, 2
    swallowed = torch.where(labels == 2, 2, 1)
    logits = F.one_hot(swallowed, 3).permute(0, 1, 4, 2, 3).float().requires_grad_(True)  # p(class 1) ~ 0.58

    def push_to_background(include_background: bool) -> float:
        """Descent direction of the background logit summed over background pixels (> 0: towards background)."""
        logits.grad = None
        OTSegmentationLoss(include_background=include_background)(logits, torch.ones(1, 1), labels, None).backward()
        return -float(logits.grad[:, :, 0][labels == 0].sum())

    # without the background term the way out of this state is a plateau (gradient ~ inter / union^2)
    assert push_to_background(True) > 20 * push_to_background(False) > 0
    assert OTSegmentationLoss().include_background


def test_iou_plus_ce_cost_is_the_sum_of_both_costs():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 2, 4, 8, 8, dtype=torch.float64)
    alpha = torch.full((2, 2, 2), 0.25, dtype=torch.float64)
    masks = torch.randint(0, 4, (2, 3, 8, 8))
    loss = OTSegmentationLoss(cost="iou+ce", lam=0.0, gamma=1.0)
    loss(logits, alpha, masks, None)
    flat = logits.flatten(1, 2)
    expected = soft_iou_cost(torch.softmax(flat, 2), masks, include_background=True) + cross_entropy_cost(flat, masks)
    assert_allclose(loss.last["cost_matrix"], expected, rtol=1e-12)


def test_ce_term_revives_a_class_whose_probability_collapsed():
    # class 2 has a 6x6 bone but probability ~6e-6 everywhere (M1 in the soft-IoU-trained U-Nets, Dice 0 for good)
    labels = torch.zeros(1, 1, 32, 32, dtype=torch.long)
    labels[..., :8, :8], labels[..., 10:16, 10:16] = 1, 2
    logits = F.one_hot(torch.where(labels == 2, 0, labels), 3).permute(0, 1, 4, 2, 3).double() * 6.0
    logits[:, :, 2] = -6.0
    logits.requires_grad_(True)

    def push_up(cost: str) -> float:
        """Descent direction of the collapsed class's logit summed over its own pixels (> 0: towards it)."""
        logits.grad = None
        OTSegmentationLoss(cost=cost)(logits, torch.ones(1, 1, dtype=torch.float64), labels, None).backward()
        return -float(logits.grad[:, :, 2][labels == 2].sum())

    assert 0 < push_up("iou") < 1e-3  # ~ p: the soft IoU alone cannot bring it back
    assert push_up("iou+ce") > 100 * push_up("iou")
