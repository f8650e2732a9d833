"""CASSNetwork and DINONetwork: outputs, lucidrains' head and view routing, lightly's DINOLoss = lucidrains' loss
(pairing and centre), teacher EMA / no gradient / last-layer freezing, weight transfer to fine-tuning, errors, and a
short DINO run through MultiViewSSLTrainer + TeacherMomentumHandler + PairSSLLoss."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from lightly.models.modules.heads import DINOProjectionHead
from monai.data import DataLoader, Dataset

from monai_osteo.engines.ssl_trainer import MultiViewSSLTrainer
from monai_osteo.handlers import TeacherMomentumHandler
from monai_osteo.losses import PairSSLLoss
from monai_osteo.networks.nets.s4mi_backbones import s4mi_classifier
from monai_osteo.networks.nets.s4mi_ssl import CASSNetwork, DINONetwork, LucidrainsDINOHead
from tests.utils import assert_allclose

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning"),
    pytest.mark.usefixtures("one_thread"),
]

K = 24


def vit(num_classes: int = 10):
    return s4mi_classifier("vit_tiny", num_classes=num_classes, img_size=32, patch_size=8)


def resnet(num_classes: int = 10):
    return s4mi_classifier("resnet18", num_classes=num_classes, img_size=32)


def dino(preset: str = "s4mi", backbone=None, **kwargs) -> DINONetwork:
    torch.manual_seed(0)
    heads = {"hidden_dim": 32, "output_dim": K}
    if preset == "caron":
        heads["bottleneck_dim"] = 8
    return DINONetwork(backbone or vit(), preset=preset, **{**heads, **kwargs})


def views(n_global: int = 2, n_local: int = 2, local_size: int = 32, b: int = 3) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(b, 3, 32, 32, generator=gen) for _ in range(n_global)] + [
        torch.randn(b, 3, local_size, local_size, generator=gen) for _ in range(n_local)
    ]


def lucidrains_ce(t, s, center, t_temp=0.04, s_temp=0.9, eps=1e-20):
    """lucidrains/vit-pytorch dino.loss_fn."""
    s_probs = (s / s_temp).softmax(dim=-1)
    t_probs = ((t.detach() - center) / t_temp).softmax(dim=-1)
    return -(t_probs * torch.log(s_probs + eps)).sum(dim=-1).mean()


# --- CASS ---------------------------------------------------------------------------------------------------


def test_cass_network_outputs_and_weight_transfer():
    torch.manual_seed(0)
    net = CASSNetwork(resnet(), vit(), projection_dim=16).eval()
    x = views(1, 0)[0]
    with torch.no_grad():
        out = net(x)
        assert sorted(out) == ["cnn", "vit"] and net.projection_dim == 16
        assert tuple(out["cnn"].shape) == tuple(out["vit"].shape) == (3, 16)
        assert_allclose(out["vit"], net.vit(x))
        for build, state, arm in ((resnet, net.cnn_state_dict(), net.cnn), (vit, net.vit_state_dict(), net.vit)):
            tuned = build(num_classes=3).eval()
            tuned.load_backbone(state)  # the 16-way SSL head is dropped
            assert_allclose(tuned.features(x), arm.features(x), rtol=1e-6, atol=1e-6)


def test_cass_network_errors():
    with pytest.raises(ValueError, match="one width"):
        CASSNetwork(resnet(10), vit(12))
    with pytest.raises(ValueError, match="cnn must be an S4MIClassifier"):
        CASSNetwork(torch.nn.Linear(2, 2), vit())


# --- DINO: heads and view routing ----------------------------------------------------------------------------


def test_lucidrains_head_structure_and_formula():
    torch.manual_seed(0)
    head = LucidrainsDINOHead(20, hidden_dim=16, output_dim=K)
    kinds = [type(m) for m in head.layers]
    assert kinds == [torch.nn.Linear, torch.nn.GELU] * 3 and head.last_layer.bias is not None
    x = torch.randn(5, 20)
    h = x
    for i in range(0, 6, 2):
        h = torch.nn.functional.gelu(head.layers[i](h))
    expected = head.last_layer(h / h.norm(dim=1, keepdim=True).clamp(min=1e-6))  # lucidrains L2Norm
    assert_allclose(head(x), expected, rtol=1e-6, atol=1e-7)


def test_presets_route_views():
    net = dino("s4mi")
    assert isinstance(net.head, LucidrainsDINOHead) and net.student_views == "local"
    calls, teacher_calls, head_calls = [], [], []
    net.backbone.head.register_forward_hook(lambda m, i, o: head_calls.append(1))  # the classifier head is unused
    net.backbone.encoder.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    net.teacher_backbone.encoder.register_forward_hook(lambda m, i, o: teacher_calls.append(tuple(i[0].shape)))
    out = net(views(2, 2))
    assert calls == [(6, 3, 32, 32)] and teacher_calls == [(6, 3, 32, 32)]  # 2 local views / 2 global views
    assert head_calls == []
    assert [tuple(s.shape) for s in out["student"]] == [(3, K)] * 2
    assert [tuple(t.shape) for t in out["teacher"]] == [(3, K)] * 2
    assert [tuple(f.shape) for f in out["features"]] == [(3, 192)] * 2

    caron = dino("caron", backbone=resnet())
    assert isinstance(caron.head, DINOProjectionHead) and caron.student_views == "all"
    assert caron.head.freeze_last_layer == 1 and not caron.head.last_layer.weight_g.requires_grad  # norm_last_layer
    out = caron(views(2, 3, local_size=16))
    assert [tuple(s.shape) for s in out["student"]] == [(3, K)] * 5 and len(out["teacher"]) == 2


def test_student_outputs_are_the_local_views_and_teacher_the_global_ones():
    net = dino("s4mi").eval()
    vs = views(2, 2)
    with torch.no_grad():
        out = net(vs)
        for v, s in zip(vs[2:], out["student"]):
            assert_allclose(s, net.head(net.backbone.features(v)), rtol=1e-5, atol=1e-6)
        for v, t in zip(vs[:2], out["teacher"]):
            assert_allclose(t, net.teacher_head(net.teacher_backbone.features(v)), rtol=1e-5, atol=1e-6)


def test_lightly_dino_loss_equals_lucidrains_pairing_and_centre():
    """2 global + 2 local views, student on the local ones: lightly's pairs (t_i, s_j), j != i, are (t1, s2) and
    (t2, s1), i.e. lucidrains' (CE(t1, s2) + CE(t2, s1)) / 2; both centre EMAs then agree."""
    net = dino("s4mi")
    loss = PairSSLLoss("dino", output_dim=K, warmup_teacher_temp=0.04, teacher_temp=0.04, student_temp=0.9,
                       center_momentum=0.9)
    center = torch.zeros(1, K)
    for step in range(2):
        out = net(views(2, 2, b=4) if step == 0 else [2.0 * v for v in views(2, 2, b=4)])
        (t1, t2), (s1, s2) = out["teacher"], out["student"]
        expected = (lucidrains_ce(t1, s2, center) + lucidrains_ce(t2, s1, center)) / 2
        assert_allclose(loss(out), expected, rtol=1e-5, atol=1e-7)
        center = 0.9 * center + 0.1 * torch.cat([t1, t2]).mean(dim=0, keepdim=True)  # update_moving_average
        assert_allclose(loss.criterion.center.reshape(1, K), center, rtol=1e-5, atol=1e-7)
    assert center.abs().sum() > 0


# --- DINO: teacher ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["s4mi", "caron"])
def test_teacher_gets_no_gradient_and_follows_the_ema(preset):
    net = dino(preset, backbone=resnet() if preset == "caron" else None)
    student = [*net.backbone.parameters(), *net.head.parameters()]
    teacher = [*net.teacher_backbone.parameters(), *net.teacher_head.parameters()]
    assert len(student) == len(teacher) and all(torch.equal(s, t) for s, t in zip(student, teacher))
    assert not any(t.requires_grad for t in teacher)
    out = net(views(2, 2, local_size=32 if preset == "s4mi" else 16))
    assert not any(t.requires_grad or t.grad_fn is not None for t in out["teacher"])
    PairSSLLoss("dino", output_dim=K)(out).backward()
    assert all(t.grad is None for t in teacher)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    t0 = [t.detach().clone() for t in teacher]
    opt.step()
    assert all(torch.equal(a, t) for a, t in zip(t0, teacher))
    m = 0.9
    expected = [m * t + (1 - m) * s.detach() for t, s in zip(t0, student)]  # lightly update_momentum
    net.momentum_update(m)
    for e, t in zip(expected, teacher):
        assert_allclose(t, e, rtol=1e-6, atol=1e-7)
    assert not all(torch.equal(s, t) for s, t in zip(student, teacher))
    with pytest.raises(ValueError, match="m must be in"):
        net.momentum_update(-0.1)


@pytest.mark.parametrize("preset", ["s4mi", "caron"])
def test_cancel_last_layer_gradients(preset):
    net = dino(preset, freeze_last_layer=1)
    last = [p for p in net.head.last_layer.parameters() if p.requires_grad]
    for epoch, cancelled in ((0, True), (1, False)):
        net.zero_grad(set_to_none=True)
        PairSSLLoss("dino", output_dim=K)(net(views())).backward()
        net.cancel_last_layer_gradients(epoch)
        assert all((p.grad is None) == cancelled for p in last)
        assert next(net.head.layers.parameters()).grad is not None


def test_backbone_state_dict_transfers():
    net = dino("s4mi").eval()
    tuned = vit(num_classes=3).eval()
    tuned.load_backbone(net.backbone_state_dict())
    x = views(1, 0)[0]
    with torch.no_grad():
        assert_allclose(tuned.features(x), net.backbone.features(x), rtol=1e-6, atol=1e-6)


def test_dino_errors():
    with pytest.raises(ValueError, match="preset must be one of"):
        DINONetwork(vit(), preset="byol")
    with pytest.raises(ValueError, match="belong to preset 'caron'"):
        DINONetwork(vit(), preset="s4mi", bottleneck_dim=8)
    with pytest.raises(ValueError, match="student_views must be"):
        DINONetwork(vit(), student_views="global", output_dim=K, hidden_dim=8)
    with pytest.raises(ValueError, match="backbone must be an S4MIClassifier"):
        DINONetwork(torch.nn.Linear(2, 2))
    net = dino("s4mi")
    with pytest.raises(ValueError, match="add local crops"):
        net(views(2, 1))
    with pytest.raises(ValueError, match="list of tensors"):
        net(views()[0])


# --- DINO through the trainer -------------------------------------------------------------------------------


class _Crops:
    """2 global + 2 local 'crops' (flips + noise; all 32x32 as lucidrains resizes them) of ``d["image"]``."""

    def __init__(self):
        self.gen = torch.Generator().manual_seed(1)

    def _view(self, x: torch.Tensor, noise: float) -> torch.Tensor:
        if torch.rand((), generator=self.gen) < 0.5:
            x = x.flip(-1)
        return x + noise * torch.randn(x.shape, generator=self.gen)

    def __call__(self, d: dict) -> dict:
        return {"image_global": [self._view(d["image"], 0.1) for _ in range(2)],
                "image_local": [self._view(d["image"], 0.3) for _ in range(2)]}


def test_dino_runs_in_the_multiview_trainer_and_moves_the_teacher():
    net = dino("s4mi")
    loss = PairSSLLoss("dino", output_dim=K, warmup_teacher_temp=0.04, teacher_temp=0.04, student_temp=0.9)
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(Dataset([{"image": x} for x in images], transform=_Crops()), batch_size=4)
    trainer = MultiViewSSLTrainer(
        device=torch.device("cpu"), max_epochs=2, train_data_loader=loader, network=net, loss_function=loss,
        optimizer=torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=3e-4),
        train_handlers=[TeacherMomentumHandler(momentum_start=0.9, momentum_end=0.9)],  # lucidrains: constant 0.9
    )
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    teacher0 = [p.clone() for p in net.teacher_backbone.parameters()]
    trainer.run()
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert trainer.state.teacher_momentum == pytest.approx(0.9) and loss.epoch == 1
    assert not all(torch.equal(a, b) for a, b in zip(teacher0, net.teacher_backbone.parameters()))
    assert not any(p.requires_grad for p in net.teacher_backbone.parameters())
    assert loss.criterion.center.abs().sum() > 0
