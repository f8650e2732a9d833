"""CASSLoss: the CASS code's formula, 2 - 2 cos (torch cosine_similarity), range and invariants, reductions,
gradients into both arms and the stop-gradient ablations, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_osteo.losses.cass import CASSLoss
from tests.utils import assert_allclose


def pair(b: int = 6, d: int = 16, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(b, d, generator=gen, dtype=dtype), torch.randn(b, d, generator=gen, dtype=dtype)


def test_equals_the_cass_code_and_two_minus_two_cosine():
    z_cnn, z_vit = pair(dtype=torch.float64)
    x, y = F.normalize(z_cnn, dim=-1, p=2), F.normalize(z_vit, dim=-1, p=2)
    code = (2 - 2 * (x * y).sum(dim=-1)).mean()  # CASS loss_fn(...).mean()
    loss = CASSLoss()(z_cnn, z_vit)
    assert_allclose(loss, code, rtol=1e-12)
    assert_allclose(loss, (2 - 2 * F.cosine_similarity(z_cnn, z_vit, dim=-1)).mean(), rtol=1e-12)
    assert_allclose(loss, ((x - y) ** 2).sum(-1).mean(), rtol=1e-12)  # normalised squared distance (BYOL)


def test_invariants_symmetry_scale_and_range():
    z_cnn, z_vit = pair()
    loss = CASSLoss(reduction="none")
    per = loss(z_cnn, z_vit)
    assert per.shape == (6,) and bool(((per >= 0) & (per <= 4)).all())
    assert_allclose(loss(z_vit, z_cnn), per, rtol=1e-6)
    assert_allclose(loss(3.0 * z_cnn, 0.5 * z_vit), per, rtol=1e-5, atol=1e-6)  # only directions count
    assert_allclose(loss(z_cnn, z_cnn), torch.zeros(6), atol=1e-6)
    assert_allclose(loss(z_cnn, -z_cnn), torch.full((6,), 4.0), rtol=1e-6)


def test_reductions():
    z_cnn, z_vit = pair()
    per = CASSLoss(reduction="none")(z_cnn, z_vit)
    assert_allclose(CASSLoss(reduction="sum")(z_cnn, z_vit), per.sum(), rtol=1e-6)
    assert_allclose(CASSLoss()(z_cnn, z_vit), per.mean(), rtol=1e-6)


@pytest.mark.parametrize("stop,cnn_grad,vit_grad", [(None, True, True), ("cnn", False, True), ("vit", True, False)])
def test_gradients_and_stop_gradient(stop, cnn_grad, vit_grad):
    z_cnn, z_vit = (z.requires_grad_() for z in pair())
    loss = CASSLoss(stop_gradient=stop)(z_cnn, z_vit)
    assert_allclose(loss, CASSLoss()(z_cnn, z_vit))  # same value, gradient switched off only
    loss.backward()
    for z, expected in ((z_cnn, cnn_grad), (z_vit, vit_grad)):
        assert (z.grad is not None and z.grad.abs().sum() > 0) == expected
    if stop is None:  # gradient of 2 - 2 cos: the same formula with the roles swapped
        ref_cnn, ref_vit = (z.detach().clone().requires_grad_() for z in (z_cnn, z_vit))
        (2 - 2 * F.cosine_similarity(ref_cnn, ref_vit, dim=-1)).mean().backward()
        assert_allclose(z_cnn.grad, ref_cnn.grad, rtol=1e-5, atol=1e-7)
        assert_allclose(z_vit.grad, ref_vit.grad, rtol=1e-5, atol=1e-7)


def test_errors():
    with pytest.raises(ValueError, match="stop_gradient must be one of"):
        CASSLoss(stop_gradient="both")
    with pytest.raises(ValueError, match="reduction must be one of"):
        CASSLoss(reduction="max")
    with pytest.raises(ValueError, match="projection_dim"):
        CASSLoss()(torch.zeros(2, 8), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        CASSLoss()(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
