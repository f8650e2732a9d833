"""PairSSLLoss against lightly's NegativeCosineSimilarity and DINOLoss on the same tensors: view pairing, symmetry,
gradients, DINO centre and teacher-temperature warm-up through ``loss.epoch``, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity

from monai_osteo.losses import PairSSLLoss
from tests.utils import assert_allclose


def tensors(n: int, b: int = 6, d: int = 10, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=gen) for _ in range(n)]


@pytest.mark.parametrize("method", ["byol", "simsiam"])
def test_two_views_equal_lightly_symmetrised_loss(method):
    p0, p1 = tensors(2, seed=1)
    z0, z1 = tensors(2, seed=2)
    ncs = NegativeCosineSimilarity()
    loss = PairSSLLoss(method)({"predictions": [p0, p1], "targets": [z0, z1]})
    assert_allclose(loss, 0.5 * (ncs(p0, z1) + ncs(p1, z0)), rtol=1e-6)
    swapped = PairSSLLoss(method)({"predictions": [p1, p0], "targets": [z1, z0]})
    assert_allclose(swapped, loss, rtol=1e-6)
    same = PairSSLLoss(method)({"predictions": [z1, z0], "targets": [z0, z1]})  # perfect prediction
    assert_allclose(same, -1.0, rtol=1e-6)


def test_multicrop_pairs_every_target_with_every_other_view():
    preds, targets = tensors(4, seed=1), tensors(2, seed=2)
    ncs = NegativeCosineSimilarity()
    expected = torch.stack([ncs(preds[j], targets[i]) for i in range(2) for j in range(4) if j != i]).mean()
    assert_allclose(PairSSLLoss("byol")({"predictions": preds, "targets": targets}), expected, rtol=1e-6)


def test_gradient_reaches_the_predictions():
    preds = [p.requires_grad_() for p in tensors(2, seed=1)]
    PairSSLLoss("simsiam")({"predictions": preds, "targets": tensors(2, seed=2)}).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in preds)


@pytest.mark.parametrize("epoch", [None, 0, 2, 50])
def test_dino_equals_lightly_including_centre_and_warmup(epoch):
    kwargs = {"warmup_teacher_temp": 0.04, "teacher_temp": 0.07, "warmup_teacher_temp_epochs": 5}
    ours, oracle = PairSSLLoss("dino", output_dim=10, **kwargs), DINOLoss(10, **kwargs)
    ours.epoch = epoch
    for step in range(2):  # the second call uses the updated centre
        teacher, student = tensors(2, seed=3 + step), tensors(5, seed=4 + step)  # 2 global, 3 local views
        if epoch is None and step == 0:
            with pytest.warns(UserWarning, match="loss.epoch"):  # warm-up configured but no epoch given
                loss = ours({"teacher": teacher, "student": student})
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # warned once only
                loss = ours({"teacher": teacher, "student": student})
        assert_allclose(loss, oracle(teacher, student, epoch=epoch), rtol=1e-6)
        assert_allclose(ours.criterion.center, oracle.center, rtol=1e-6)


def test_dino_temperature_warmup_changes_the_loss():
    teacher, student = tensors(2, seed=3), tensors(2, seed=4)
    values = []
    for epoch in (0, 4):
        loss = PairSSLLoss("dino", output_dim=10, teacher_temp=0.07, warmup_teacher_temp_epochs=5)
        loss.epoch = epoch
        values.append(loss({"teacher": teacher, "student": student}).item())
    assert values[0] != values[1]


def test_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        PairSSLLoss("moco")
    with pytest.raises(ValueError, match="warmup_teacher_temp_epochs"):
        PairSSLLoss("dino", warmup_teacher_temp_epochs=-1)
    with pytest.raises(ValueError, match="method='byol'"):
        PairSSLLoss("byol")({"student": tensors(2), "teacher": tensors(2)})
    with pytest.raises(ValueError, match=">= 2 views"):
        PairSSLLoss("byol")({"predictions": tensors(1), "targets": tensors(1)})
    with pytest.raises(ValueError, match="between 1 and as many"):
        PairSSLLoss("simsiam")({"predictions": tensors(2), "targets": tensors(3)})
    with pytest.raises(ValueError, match="output_dim"):
        PairSSLLoss("dino", output_dim=12)({"student": tensors(2), "teacher": tensors(2)})
