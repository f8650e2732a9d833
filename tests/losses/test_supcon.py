"""SupCon loss: naive loop reference of Khosla et al. Eq. 2 (with unlabelled samples), equality with lightly's
NT-Xent for two views, invariances (feature scale, batch permutation), gradients, reductions, gathering across
two CPU processes, errors."""

from __future__ import annotations

import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from lightly.loss import NTXentLoss

from monai_osteo.losses import SupConLoss
from tests.utils import assert_allclose


def naive_supcon(features: torch.Tensor, labels: torch.Tensor | None, t: float, base_t: float) -> torch.Tensor:
    """Eq. 2 written as loops: one loss per anchor, view-major (anchor v * B + b); 0 where P(i) is empty."""
    b, v, _ = features.shape
    z = F.normalize(features.double(), dim=-1)
    flat = [(vi, bi) for vi in range(v) for bi in range(b)]
    out = []
    for i, (vi, bi) in enumerate(flat):
        num, positives = [], []
        for a, (va, ba) in enumerate(flat):
            if a == i:
                continue
            num.append(math.exp(float(z[bi, vi] @ z[ba, va]) / t))
            same_label = labels is not None and labels[bi] >= 0 and labels[bi] == labels[ba]
            if ba == bi or same_label:
                positives.append(float(z[bi, vi] @ z[ba, va]) / t)
        denom = sum(num)
        if not positives:
            out.append(0.0)
            continue
        out.append(-(t / base_t) * sum(p - math.log(denom) for p in positives) / len(positives))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("v", [1, 2, 4])
@pytest.mark.parametrize("with_labels", [True, False])
@pytest.mark.parametrize("base_t", [None, 0.07])
def test_matches_naive_reference(v, with_labels, base_t):
    g = torch.Generator().manual_seed(v)
    b, t = 7, 0.2
    features = torch.randn(b, v, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, -1, 2, -1, 1]) if with_labels else None
    expected = naive_supcon(features, labels, t, t if base_t is None else base_t)
    per_anchor = SupConLoss(t, base_temperature=base_t, reduction="none")(features, labels)
    assert per_anchor.shape == (b * v,)
    assert_allclose(per_anchor, expected, rtol=1e-10, atol=1e-12)
    has_pos = expected != 0
    mean = expected[has_pos].mean() if has_pos.any() else torch.tensor(0.0, dtype=torch.float64)
    assert_allclose(SupConLoss(t, base_t)(features, labels), mean, rtol=1e-10)
    assert_allclose(SupConLoss(t, base_t, reduction="sum")(features, labels), expected.sum(), rtol=1e-10)


@pytest.mark.parametrize("labels", [None, torch.arange(6)])
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_two_views_equals_lightly_ntxent(labels, t):
    """V=2, no shared labels: SupConLoss(t) == NTXentLoss(t) exactly; base_temperature b scales it by t / b."""
    z0, z1 = torch.randn(6, 16), torch.randn(6, 16)
    ntxent = NTXentLoss(temperature=t)(z0, z1)
    assert_allclose(SupConLoss(t)(torch.stack([z0, z1], 1), labels), ntxent, rtol=1e-5)
    assert_allclose(SupConLoss(t)([z0, z1], labels), ntxent, rtol=1e-5)
    assert_allclose(SupConLoss(t, base_temperature=0.07)([z0, z1], labels), ntxent * t / 0.07, rtol=1e-5)


def test_scale_and_permutation_invariance():
    features, labels = torch.randn(8, 3, 10), torch.tensor([0, 1, 1, -1, 0, 2, -1, 2])
    loss_fn = SupConLoss(0.1, reduction="none")
    ref = loss_fn(features, labels)
    scale = torch.rand(8, 3, 1) * 10 + 0.1
    assert_allclose(loss_fn(features * scale, labels), ref, rtol=1e-5, atol=1e-6)
    perm = torch.randperm(8)
    permuted = loss_fn(features[perm], labels[perm]).view(3, 8)
    assert_allclose(permuted, ref.view(3, 8)[:, perm], rtol=1e-5, atol=1e-6)
    assert_allclose(SupConLoss(0.1)(features[perm], labels[perm]), SupConLoss(0.1)(features, labels), rtol=1e-5)


def test_gradients_dtype_device():
    features = torch.randn(5, 2, 8, dtype=torch.float64, requires_grad=True)
    loss = SupConLoss(0.1)(features, torch.tensor([0, 0, 1, -1, 1]))
    assert loss.dtype == torch.float64 and loss.device == features.device and loss.ndim == 0
    loss.backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
    # unique labels, one view: no anchor has a positive -> zero loss that still backpropagates
    lonely = torch.randn(4, 1, 8, requires_grad=True)
    zero = SupConLoss(0.1)(lonely, torch.arange(4))
    zero.backward()
    assert zero.item() == 0.0 and torch.equal(lonely.grad, torch.zeros_like(lonely))


def test_gather_without_process_group_is_local():
    features, labels = torch.randn(4, 2, 8), torch.tensor([0, 1, 0, -1])
    assert_allclose(SupConLoss(gather_distributed=True)(features, labels), SupConLoss()(features, labels))


def _gather_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    features, labels = torch.randn(2 * world, 2, 6, dtype=torch.float64), torch.tensor([0, 1, -1, 0])
    local = features[2 * rank : 2 * rank + 2].clone().requires_grad_(True)
    loss = SupConLoss(0.3, gather_distributed=True, reduction="none")(local, labels[2 * rank : 2 * rank + 2])
    loss.sum().backward()
    torch.save({"loss": loss.detach(), "grad": local.grad}, os.path.join(out_dir, f"{rank}.pt"))
    dist.destroy_process_group()


def test_gather_distributed_two_processes():
    """Each rank's per-anchor losses equal the full-batch ones; summed over ranks the gradients match too."""
    world = 2
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_gather_worker, args=(world, os.path.join(tmp, "init"), tmp), nprocs=world, join=True)
        results = [torch.load(os.path.join(tmp, f"{r}.pt")) for r in range(world)]
    torch.manual_seed(0)
    features, labels = torch.randn(2 * world, 2, 6, dtype=torch.float64), torch.tensor([0, 1, -1, 0])
    features.requires_grad_(True)
    full = SupConLoss(0.3, reduction="none")(features, labels)
    full.sum().backward()
    for r, res in enumerate(results):
        assert_allclose(res["loss"], full.detach().view(2, -1)[:, 2 * r : 2 * r + 2].reshape(-1), rtol=1e-10)
        assert_allclose(res["grad"], features.grad[2 * r : 2 * r + 2], rtol=1e-8, atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SupConLoss(0.0)
    with pytest.raises(ValueError, match="base_temperature must be > 0"):
        SupConLoss(0.1, base_temperature=-1.0)
    with pytest.raises(ValueError, match="features must have shape"):
        SupConLoss()(torch.randn(4, 8))
    with pytest.raises(ValueError, match="list of \\(B, D\\) tensors of one shape"):
        SupConLoss()([torch.randn(4, 8), torch.randn(3, 8)])
    with pytest.raises(ValueError, match="labels must be an integer tensor of shape \\(4,\\)"):
        SupConLoss()(torch.randn(4, 2, 8), torch.zeros(4))
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        SupConLoss()(torch.randn(4, 2, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 views"):
        SupConLoss()(torch.randn(1, 1, 8))
    with pytest.raises(ValueError, match="reduction must be one of"):
        SupConLoss(reduction="avg")
