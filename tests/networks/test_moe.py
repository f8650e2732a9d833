"""Device-aware MoE head (vertebral paper §2.2, Eqs. 2-3): gate rows sum to 1, zero-init gate is uniform, output is
the hand-computed mixture, N = 1 without embedding is the plain MLP, the device only moves the gate, permuting the
embedding rows permutes the devices, bad device indices raise, TorchScript agrees with eager."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_osteo.networks.blocks import DeviceMoEHead
from tests.utils import assert_allclose

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

F_IN, OUT, HID = 16, 5, 8


def make_head(seed: int = 0, randomise_gate: bool = True, **kwargs) -> DeviceMoEHead:
    torch.manual_seed(seed)
    kwargs = {"out_features": OUT, "expert_hidden": HID, **kwargs}
    head = DeviceMoEHead(F_IN, **kwargs).eval()
    if randomise_gate:
        with torch.no_grad():
            for p in head.gate.parameters():
                p.normal_(0.0, 0.5)
    return head


def inputs(b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(b, F_IN, generator=gen), torch.tensor([0, 1, 2, 2, 1, 0])[:b]


def expert_by_hand(expert: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Linear -> ReLU -> (eval: identity dropout) -> Linear, from the expert's own weights."""
    return F.linear(F.relu(F.linear(x, expert[0].weight, expert[0].bias)), expert[3].weight, expert[3].bias)


@pytest.mark.parametrize("kwargs", [{}, {"device_embedding": False}, {"gate_hidden": 7}, {"num_experts": 4}])
def test_gate_rows_sum_to_one(kwargs):
    head = make_head(**kwargs)
    out, gate = head(*inputs())
    assert tuple(out.shape) == (6, OUT) and tuple(gate.shape) == (6, head.num_experts)
    assert_allclose(gate.sum(dim=1), torch.ones(6), rtol=1e-6)
    assert bool((gate > 0).all())


@pytest.mark.parametrize("gate_hidden", [None, 7])
def test_zero_initialised_gate_is_uniform(gate_hidden):
    head = make_head(randomise_gate=False, gate_hidden=gate_hidden)
    assert not head.gate[-1].weight.any() and not head.gate[-1].bias.any()
    _, gate = head(*inputs())
    assert_allclose(gate, torch.full((6, 3), 1.0 / 3.0), rtol=1e-6)
    assert 0.01 < float(head.embedding.weight.detach().std()) < 0.03  # N(0, 0.02)


@pytest.mark.parametrize("device_embedding", [True, False])
def test_output_is_hand_computed_mixture(device_embedding):
    head = make_head(device_embedding=device_embedding)
    x, d = inputs()
    out, gate = head(x, d)
    gate_in = x + head.embedding.weight[d] if device_embedding else x
    alpha = torch.softmax(F.linear(gate_in, head.gate[0].weight, head.gate[0].bias), dim=1)  # Eq. 2
    expected = sum(alpha[:, i : i + 1] * expert_by_hand(e, x) for i, e in enumerate(head.experts))  # Eq. 3
    assert_allclose(gate, alpha, rtol=1e-5, atol=1e-7)
    assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_mlp_gate_is_hand_computed():
    head = make_head(gate_hidden=7)
    x, d = inputs()
    _, gate = head(x, d)
    g0, g2 = head.gate[0], head.gate[2]
    hidden = F.gelu(F.linear(x + head.embedding.weight[d], g0.weight, g0.bias))
    assert_allclose(gate, torch.softmax(F.linear(hidden, g2.weight, g2.bias), dim=1), rtol=1e-5, atol=1e-7)


def test_single_expert_without_embedding_is_plain_mlp():
    head = make_head(num_experts=1, device_embedding=False)
    plain = torch.nn.Sequential(
        torch.nn.Linear(F_IN, HID), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(HID, OUT)
    ).eval()
    plain.load_state_dict(head.experts[0].state_dict())
    x, d = inputs()
    out, gate = head(x, d)
    assert torch.equal(gate, torch.ones(6, 1))
    assert torch.equal(out, plain(x))
    assert head.embedding is None


def test_single_expert_with_embedding_into_experts_sees_p_plus_d():
    head = make_head(num_experts=1, device_embedding=True, embed_into_experts=True)
    x, d = inputs()
    out, _ = head(x, d)
    assert_allclose(out, expert_by_hand(head.experts[0], x + head.embedding.weight[d]), rtol=1e-5, atol=1e-6)
    out_other, _ = head(x, (d + 1) % 3)
    assert not torch.allclose(out, out_other)


def test_device_moves_only_the_gate():
    head = make_head()
    x, d = inputs()
    experts = torch.stack([e(x) for e in head.experts], dim=1)  # (B, N, OUT), independent of the device
    out_a, gate_a = head(x, d)
    out_b, gate_b = head(x, (d + 1) % 3)
    assert not torch.allclose(gate_a, gate_b)
    for out, gate in ((out_a, gate_a), (out_b, gate_b)):
        assert_allclose(out, (gate.unsqueeze(2) * experts).sum(dim=1), rtol=1e-5, atol=1e-6)


def test_permuting_embedding_rows_permutes_devices():
    head = make_head()
    perm = torch.tensor([2, 0, 1])
    permuted = make_head()
    with torch.no_grad():
        permuted.embedding.weight.copy_(head.embedding.weight[perm])
    x, d = inputs()
    out_p, gate_p = permuted(x, d)
    out, gate = head(x, perm[d])
    assert_allclose(gate_p, gate, rtol=1e-6, atol=1e-7)
    assert_allclose(out_p, out, rtol=1e-6, atol=1e-7)


def test_gradients_reach_experts_gate_and_used_embedding_rows():
    head = make_head().train()
    x, _ = inputs()
    out, _ = head(x, torch.tensor([0, 0, 2, 2, 0, 2]))
    out.square().sum().backward()
    assert all(bool(e[0].weight.grad.abs().sum() > 0) for e in head.experts)
    assert bool(head.gate[0].weight.grad.abs().sum() > 0)
    row_grad = head.embedding.weight.grad.abs().sum(dim=1)
    assert bool(row_grad[0] > 0) and bool(row_grad[2] > 0) and float(row_grad[1]) == 0.0


def test_bad_device_raises():
    head = make_head()
    x, d = inputs()
    with pytest.raises(ValueError, match=r"device must hold indices in \[0, 3\)"):
        head(x, torch.tensor([0, 1, 3, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"got values in \[-1, 1\]"):
        head(x, torch.tensor([0, 1, -1, 0, 0, 0]))
    with pytest.raises(ValueError, match="one device index per sample"):
        head(x, d[:3])
    with pytest.raises(ValueError, match="integer tensor"):
        head(x, d.float())
    with pytest.raises(ValueError, match=r"features must have shape \(B, 16\)"):
        head(x[:, :8], d)
    scripted = torch.jit.script(head)
    with pytest.raises(Exception, match=r"device must hold indices in \[0, 3\)"):
        scripted(x, torch.tensor([0, 1, 3, 0, 0, 0]))


def test_constructor_errors_and_warning():
    with pytest.raises(ValueError, match="num_experts must be an integer >= 1"):
        DeviceMoEHead(F_IN, num_experts=0)
    with pytest.raises(ValueError, match="dropout must be in"):
        DeviceMoEHead(F_IN, dropout=1.0)
    with pytest.raises(ValueError, match="gate_hidden must be None"):
        DeviceMoEHead(F_IN, gate_hidden=0)
    with pytest.raises(ValueError, match="needs device_embedding=True"):
        DeviceMoEHead(F_IN, device_embedding=False, embed_into_experts=True)
    with pytest.warns(UserWarning, match="embed_into_experts=True"):
        DeviceMoEHead(F_IN, num_experts=1, device_embedding=True)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"device_embedding": False}, {"gate_hidden": 7}, {"num_experts": 1, "embed_into_experts": True}],
)
def test_torchscript_equals_eager(kwargs):
    head = make_head(**kwargs)
    scripted = torch.jit.script(head)
    x, d = inputs()
    out, gate = head(x, d)
    out_s, gate_s = scripted(x, d)
    assert_allclose(out_s, out, rtol=1e-6, atol=1e-7)
    assert_allclose(gate_s, gate, rtol=1e-6, atol=1e-7)
