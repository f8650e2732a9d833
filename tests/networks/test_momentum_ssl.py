"""EncoderSSLNetwork: outputs per method, one encoder call per resolution, stop-gradient targets, teacher EMA and
freezing, DINO last-layer cancelling, encoder transfer into ResNetUNet, errors."""

from __future__ import annotations

import pytest
import torch

from monai_osteo.losses import PairSSLLoss
from monai_osteo.networks.nets import EncoderSSLNetwork, ResNetUNet
from tests.utils import assert_allclose

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning"),
    pytest.mark.usefixtures("one_thread"),
]

TINY = {"backbone": "resnet18", "encoder_depth": 2}  # feature_dim 64
HEADS = {
    "byol": {"hidden_dim": 32, "projection_dim": 16, "prediction_hidden_dim": 8},
    "simsiam": {"hidden_dim": 32, "projection_dim": 16, "prediction_hidden_dim": 8},
    "dino": {"hidden_dim": 32, "bottleneck_dim": 8, "output_dim": 24},
}


def tiny(method: str, **kwargs) -> EncoderSSLNetwork:
    torch.manual_seed(0)
    return EncoderSSLNetwork(method=method, **TINY, **{**HEADS[method], **kwargs})


def views(b: int = 4, n_local: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(b, 3, 32, 32, generator=gen) for _ in range(2)] + [
        torch.randn(b, 3, 16, 16, generator=gen) for _ in range(n_local)
    ]


@pytest.mark.parametrize("method", ["byol", "simsiam", "dino"])
def test_outputs_and_one_encoder_call_per_resolution(method):
    net = tiny(method)
    calls, teacher_calls = [], []
    net.encoder.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    if net.teacher_encoder is not None:
        net.teacher_encoder.register_forward_hook(lambda m, i, o: teacher_calls.append(tuple(i[0].shape)))
    out = net(views(n_local=2), step=0)
    assert calls == [(8, 3, 32, 32), (8, 3, 16, 16)]
    assert teacher_calls == ([] if method == "simsiam" else [(8, 3, 32, 32)])  # the teacher sees the global views
    assert net.feature_dim == 64 and [tuple(f.shape) for f in out["features"]] == [(4, 64)] * 4
    online, target, dim = ("student", "teacher", 24) if method == "dino" else ("predictions", "targets", 16)
    assert sorted(out) == sorted(["features", online, target])
    assert [tuple(p.shape) for p in out[online]] == [(4, dim)] * 4
    assert [tuple(t.shape) for t in out[target]] == [(4, dim)] * 2


def test_grouped_encoding_equals_separate_views():
    net = tiny("byol").eval()
    vs = views(n_local=2)
    with torch.no_grad():
        grouped = net.encode(vs, net.encoder)
        for v, f in zip(vs, grouped):
            assert_allclose(f, net.encoder(v)[-1].mean(dim=(2, 3)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["byol", "simsiam", "dino"])
def test_targets_carry_no_gradient_and_teacher_gets_none(method):
    net = tiny(method)
    out = net(views())
    online, target = ("student", "teacher") if method == "dino" else ("predictions", "targets")
    assert all(p.requires_grad for p in out[online])
    assert not any(t.requires_grad or t.grad_fn is not None for t in out[target])
    PairSSLLoss(method, output_dim=24)(out).backward()
    assert net.encoder.conv1.weight.grad is not None and net.encoder.conv1.weight.grad.abs().sum() > 0
    if net.teacher_encoder is not None:
        assert all(p.grad is None for p in [*net.teacher_encoder.parameters(), *net.teacher_head.parameters()])


def test_simsiam_targets_are_the_detached_online_projections():
    net = tiny("simsiam").eval()
    vs = views()
    with torch.no_grad():
        out = net(vs)
        for v, z in zip(vs, out["targets"]):
            assert_allclose(z, net.projection_head(net.encode([v], net.encoder)[0]), atol=1e-5, rtol=1e-5)
    assert net.teacher_encoder is None and net.teacher_head is None
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.momentum_update(0.5)  # no teacher: a no-op
    net.cancel_last_layer_gradients(0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("method", ["byol", "dino"])
def test_teacher_is_frozen_by_the_optimiser_and_moved_by_ema(method):
    net = tiny(method)
    student = [*net.encoder.parameters(), *net.projection_head.parameters()]
    teacher = [*net.teacher_encoder.parameters(), *net.teacher_head.parameters()]
    assert len(student) == len(teacher) and not any(t.requires_grad for t in teacher)
    assert all(torch.equal(s, t) for s, t in zip(student, teacher))  # same initial weights
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    t0 = [t.detach().clone() for t in teacher]
    PairSSLLoss(method, output_dim=24)(net(views())).backward()
    opt.step()
    assert all(torch.equal(a, t) for a, t in zip(t0, teacher))
    assert not all(torch.equal(s, t) for s, t in zip(student, teacher))
    m = 0.9
    expected = [m * t + (1 - m) * s.detach() for t, s in zip(t0, student)]
    net.momentum_update(m)
    for e, t in zip(expected, teacher):
        assert_allclose(t, e, rtol=1e-6, atol=1e-7)
    assert not any(t.requires_grad for t in teacher)
    net.momentum_update(0.0)
    assert all(torch.equal(s, t) for s, t in zip(student, teacher))
    with pytest.raises(ValueError, match="m must be in"):
        net.momentum_update(1.5)


def test_dino_last_layer_gradients_cancelled_in_frozen_epochs():
    net = tiny("dino", freeze_last_layer=1)
    last = list(net.projection_head.last_layer.parameters())
    for epoch, cancelled in ((0, True), (1, False)):
        net.zero_grad(set_to_none=True)
        PairSSLLoss("dino", output_dim=24)(net(views())).backward()
        net.cancel_last_layer_gradients(epoch)
        assert all(p.grad is None for p in last) == cancelled
        assert net.encoder.conv1.weight.grad is not None


def test_dino_global_and_local_views():
    net = tiny("dino")
    out = net(views(n_local=4))
    assert len(out["student"]) == 6 and len(out["teacher"]) == 2
    loss = PairSSLLoss("dino", output_dim=24)(out)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_encoder_weights_transfer_to_resnet_unet():
    torch.manual_seed(0)
    net = EncoderSSLNetwork(method="byol", hidden_dim=16, projection_dim=8, prediction_hidden_dim=8)  # ResNet-50, d3
    assert net.feature_dim == 512
    with torch.no_grad():
        for p in net.encoder.parameters():
            p.add_(0.01)  # differ from the teacher and from any fresh initialisation
    state = net.encoder_state_dict()
    assert not any(k.startswith(("teacher", "projection", "prediction")) for k in state)
    unet = ResNetUNet(2, 3, 1)
    unet.load_encoder(state)
    for k, v in unet.encoder_state_dict().items():
        assert torch.equal(v, state[k])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(unet.encoder.eval()(x), net.encoder.eval()(x)):
            assert_allclose(a, b)
    with pytest.raises(ValueError, match="misses encoder weights"):
        ResNetUNet(2, 3, 1).load_encoder(tiny("byol").encoder_state_dict())


def test_head_defaults_and_errors():
    defaults = EncoderSSLNetwork(method="byol", **TINY).dims
    assert defaults == {"hidden_dim": 4096, "projection_dim": 256, "prediction_hidden_dim": 4096}
    with pytest.raises(ValueError, match="method must be one of"):
        EncoderSSLNetwork(method="moco")
    with pytest.raises(ValueError, match="num_global"):
        tiny("byol", num_global=0)
    with pytest.raises(ValueError, match="projection_dim"):
        tiny("simsiam", projection_dim=0)
    net = tiny("byol")
    with pytest.raises(ValueError, match="list of at least 2"):
        net(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="at least max"):
        net(views()[:1])
    with pytest.raises(ValueError, match="num_global=3"):
        tiny("dino", num_global=3)(views())
