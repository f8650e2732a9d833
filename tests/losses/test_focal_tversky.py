"""Focal Tversky loss: a hand-written numpy formula, MONAI ``TverskyLoss`` at ``gamma=1``, MONAI
``AsymmetricFocalTverskyLoss``'s foreground term, finite gradients at TI = 1, shapes, errors, monotonicity and the
effect of the focal exponent derived from ``d/ds s ** (1 / gamma)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import TverskyLoss
from monai.losses.unified_focal_loss import AsymmetricFocalTverskyLoss  # not re-exported by monai.losses (1.6.1)

from monai_osteo.losses import FocalTverskyLoss
from tests.utils import assert_allclose


def reference_ftl(probs, target, alpha_fn, beta_fp, gamma, smooth_nr, smooth_dr, batch, reduction):
    """Abraham & Khan 2019, Eqs. 3-4, in float64 numpy on probabilities and one-hot targets (B, C, *spatial)."""
    p = np.asarray(probs, dtype=np.float64)
    g = np.asarray(target, dtype=np.float64)
    axes = (0, *range(2, p.ndim)) if batch else tuple(range(2, p.ndim))
    tp = (p * g).sum(axis=axes)
    fn = ((1 - p) * g).sum(axis=axes)
    fp = (p * (1 - g)).sum(axis=axes)
    ti = (tp + smooth_nr) / (tp + alpha_fn * fn + beta_fp * fp + smooth_dr)
    loss = np.maximum(1 - ti, 0) ** (1 / gamma)
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("case", ["sigmoid1", "softmax2_bg", "softmax2_nobg", "softmax3_onehot"])
def test_matches_hand_formula(case, batch, reduction):
    rng = np.random.default_rng(0)
    channels = {"sigmoid1": 1, "softmax2_bg": 2, "softmax2_nobg": 2, "softmax3_onehot": 3}[case]
    logits = rng.normal(scale=2.0, size=(3, channels, 8, 7))
    labels = rng.integers(0, max(channels, 2), size=(3, 1, 8, 7))
    kwargs = {"alpha_fn": 0.7, "beta_fp": 0.3, "gamma": 4 / 3, "smooth_nr": 1e-5, "smooth_dr": 2e-5}
    if case == "sigmoid1":
        probs, onehot, target = _sigmoid(logits), labels.astype(float), labels.astype(float)
        loss = FocalTverskyLoss(sigmoid=True, batch=batch, reduction=reduction, **kwargs)
    else:
        probs, onehot = _softmax(logits), np.concatenate([labels == c for c in range(channels)], axis=1).astype(float)
        include_background = case != "softmax2_nobg"
        to_onehot_y = case == "softmax3_onehot"
        target = labels.astype(float) if to_onehot_y else onehot
        loss = FocalTverskyLoss(
            softmax=True,
            include_background=include_background,
            to_onehot_y=to_onehot_y,
            batch=batch,
            reduction=reduction,
            **kwargs,
        )
        if not include_background:
            probs, onehot = probs[:, 1:], onehot[:, 1:]
    expected = reference_ftl(probs, onehot, batch=batch, reduction=reduction, **kwargs)
    actual = loss(torch.as_tensor(logits), torch.as_tensor(target))
    assert actual.dtype == torch.float64
    assert tuple(actual.shape) == np.shape(expected)
    assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("batch", [False, True])
def test_gamma_one_is_monai_tversky(batch, reduction):
    torch.manual_seed(0)
    logits = torch.randn(4, 2, 9, 9)
    target = torch.randint(0, 2, (4, 1, 9, 9)).float()
    ours = FocalTverskyLoss(gamma=1.0, softmax=True, to_onehot_y=True, batch=batch, reduction=reduction)
    monai = TverskyLoss(alpha=0.3, beta=0.7, softmax=True, to_onehot_y=True, batch=batch, reduction=reduction)
    assert_allclose(ours(logits, target), monai(logits, target), rtol=1e-6, atol=1e-7)
    # per class, MONAI's alpha (FP) and beta (FN) swapped give another loss (with 2 classes FP_bg = FN_fg, so the
    # class mean barely moves)
    ours.reduction = "none"
    swapped = TverskyLoss(alpha=0.7, beta=0.3, softmax=True, to_onehot_y=True, batch=batch, reduction="none")
    assert (ours(logits, target) - swapped(logits, target)).abs().max() > 1e-3


def test_foreground_term_is_monai_asymmetric_focal_tversky():
    """MONAI's AFTL with delta=0.7 (FN weight), gamma=0.25 (exponent 1 - 0.25 = 0.75 = 1 / (4/3)), epsilon=1e-7:
    its foreground column is our loss with smooth_nr = smooth_dr = 1e-7; its background column is unfocused."""
    torch.manual_seed(0)
    fg = torch.rand(3, 1, 10, 10, dtype=torch.float64) * 0.9 + 0.05  # away from MONAI's clamp to [1e-7, 1 - 1e-7]
    probs = torch.cat([1 - fg, fg], dim=1)
    g = (torch.rand(3, 1, 10, 10) > 0.6).double()
    onehot = torch.cat([1 - g, g], dim=1)
    monai = AsymmetricFocalTverskyLoss(delta=0.7, gamma=0.25, epsilon=1e-7, reduction="none")(probs, onehot)
    assert monai.shape == (3, 2)
    ours = FocalTverskyLoss(alpha_fn=0.7, beta_fp=0.3, gamma=4 / 3, smooth_nr=1e-7, smooth_dr=1e-7, reduction="none")
    assert_allclose(ours(probs, onehot)[:, 1], monai[:, 1], rtol=1e-12)
    # MedSASS's head: one sigmoid channel gives the same foreground term
    logits = torch.logit(fg)
    head = FocalTverskyLoss(sigmoid=True, smooth_nr=1e-7, smooth_dr=1e-7, reduction="none")(logits, g)
    assert_allclose(head[:, 0], monai[:, 1], rtol=1e-10)
    # MONAI's background term is the plain Tversky loss (no focal exponent)
    plain = FocalTverskyLoss(gamma=1.0, smooth_nr=1e-7, smooth_dr=1e-7, reduction="none")(probs, onehot)
    assert_allclose(plain[:, 0], monai[:, 0], rtol=1e-12)


@pytest.mark.parametrize("gamma", [4 / 3, 3.0, 1.0, 0.5])
def test_gradient_finite_at_ti_one_and_empty_target(gamma):
    loss = FocalTverskyLoss(gamma=gamma)
    target = (torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    for tgt in (target, torch.zeros_like(target)):  # perfect prediction (TI = 1); empty target predicted empty
        pred = tgt.clone().requires_grad_(True)
        value = loss(pred, tgt)
        value.backward()
        assert float(value.detach()) == 0.0
        assert torch.isfinite(pred.grad).all()
    # saturated logits: sigmoid gives exactly 0/1 or a denormal, 1 - TI rounds to <= 0
    logits = ((target * 2 - 1) * 100).requires_grad_(True)
    FocalTverskyLoss(gamma=gamma, sigmoid=True)(logits, target).backward()
    assert torch.isfinite(logits.grad).all()
    # empty target, non-empty prediction: TI ~ 0, a finite non-zero gradient pushing the prediction down
    logits = torch.randn(2, 1, 6, 6, requires_grad=True)
    value = FocalTverskyLoss(gamma=gamma, sigmoid=True)(logits, torch.zeros_like(target))
    value.backward()
    assert 0.9 < float(value.detach()) <= 1.0
    assert torch.isfinite(logits.grad).all() and (logits.grad > 0).all()
    # just below TI = 1 (1 - TI ~ 1e-13 in float64): the formula itself, with a large but finite gradient
    pred = target.double().clone()
    pred[0, 0, 0, 0] = 1e-12 if target[0, 0, 0, 0] == 0 else 1 - 1e-12
    pred.requires_grad_(True)
    value = FocalTverskyLoss(gamma=gamma, smooth_nr=0.0, smooth_dr=0.0)(pred, target.double())
    value.backward()
    assert 0 < float(value.detach()) < 1e-3 and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({}, (2, 3)),
        ({"batch": True}, (3,)),
        ({"include_background": False}, (2, 2)),
        ({"include_background": False, "batch": True}, (2,)),
    ],
)
def test_reduction_none_shape(kwargs, shape):
    x, y = torch.rand(2, 3, 4, 4, 4), (torch.rand(2, 3, 4, 4, 4) > 0.5).float()  # 3-D input
    out = FocalTverskyLoss(reduction="none", **kwargs)(x, y)
    assert tuple(out.shape) == shape
    assert tuple(out.shape) == tuple(TverskyLoss(reduction="none", **kwargs)(x, y).shape)
    assert FocalTverskyLoss(**kwargs)(x, y).shape == ()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"gamma": 0.0}, "gamma must be > 0"),
        ({"gamma": -1.0}, "gamma must be > 0"),
        ({"gamma": float("nan")}, "gamma must be > 0"),
        ({"alpha_fn": -0.1}, "alpha_fn must be >= 0"),
        ({"beta_fp": -1.0}, "beta_fp must be >= 0"),
        ({"smooth_nr": -1e-5}, "smooth_nr must be >= 0"),
        ({"smooth_dr": -1e-5}, "smooth_dr must be >= 0"),
        ({"reduction": "avg"}, "reduction must be one of"),
        ({"sigmoid": True, "softmax": True}, "Incompatible values"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FocalTverskyLoss(**kwargs)


def test_perfect_prediction_zero_and_monotone_towards_target():
    gen = torch.Generator().manual_seed(1)
    target = (torch.rand(2, 1, 12, 12, generator=gen) > 0.7).float()
    start = torch.rand(2, 1, 12, 12, generator=gen)
    loss = FocalTverskyLoss()
    assert float(loss(target, target)) == 0.0
    logits = (target * 2 - 1) * 20  # sigmoid(+-20): ~1e-9 from the target
    assert 0 <= float(FocalTverskyLoss(sigmoid=True)(logits, target)) < 1e-4
    values = [float(loss((1 - t) * start + t * target, target)) for t in np.linspace(0, 1, 11)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[-1] == 0.0


def test_focal_exponent_effect():
    """With s = 1 - TI in (0, 1) and gamma > 1: s ** (1/gamma) > s, the ratio FTL / TL = s ** (1/gamma - 1) is
    largest for the easy (small s) example, and dFTL/dTL = s ** (1/gamma - 1) / gamma exceeds 1 exactly when
    s < gamma ** (-gamma / (gamma - 1)) ((3/4)**4 = 0.316 for gamma = 4/3). gamma < 1 reverses all of this."""
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    easy = 0.95 * target + 0.02  # 1 - TI ~ 0.05
    hard = 0.5 - 0.2 * target  # 1 - TI ~ 0.76
    pred = torch.cat([easy[:1], hard[:1]]).requires_grad_(True)
    tl_pred = pred.detach().clone().requires_grad_(True)
    for gamma in (4 / 3, 2.0, 0.5):
        pred.grad, tl_pred.grad = None, None
        ftl = FocalTverskyLoss(gamma=gamma, reduction="none")(pred, target)[:, 0]
        tl = FocalTverskyLoss(gamma=1.0, reduction="none")(tl_pred, target)[:, 0]
        s = tl.detach()
        assert 0.01 < s[0] < 0.1 and 0.7 < s[1] < 0.9
        ratio = ftl.detach() / s
        assert_allclose(ratio, s ** (1 / gamma - 1), rtol=1e-5)
        ftl.sum().backward()
        tl.sum().backward()
        grad_ratio = pred.grad.flatten(1).norm(dim=1) / tl_pred.grad.flatten(1).norm(dim=1)
        assert_allclose(grad_ratio, s ** (1 / gamma - 1) / gamma, rtol=1e-4)
        if gamma > 1:
            assert (ftl > tl).all() and ratio[0] > ratio[1]
            assert grad_ratio[0] > 1 > grad_ratio[1]  # s_easy < 0.316 < s_hard for gamma = 4/3; also for gamma = 2
        else:
            assert (ftl < tl).all() and ratio[0] < ratio[1]
            assert grad_ratio[0] < grad_ratio[1]
