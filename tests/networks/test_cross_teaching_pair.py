"""CrossTeachingPair, the S4MI network factories, and one Adam over the pair == the code's two Adams."""

from __future__ import annotations

import copy

import pytest
import torch
from monai.losses import DiceCELoss, DiceLoss
from monai.networks.nets import BasicUNet, SwinUNETR

from monai_osteo.networks.nets.cross_teaching import CrossTeachingPair, s4mi_swin_unet, s4mi_unet
from tests.utils import assert_allclose


def _pair(seed: int = 0) -> CrossTeachingPair:
    torch.manual_seed(seed)
    return CrossTeachingPair(s4mi_unet(1, 2, features=(4, 4, 8, 8, 16, 4), dropout=0.0),
                             s4mi_swin_unet(1, 2, img_size=64, feature_size=12))


def test_forward_shapes_and_checkpoint_keys(one_thread):
    pair = _pair()
    assert isinstance(pair.net1, BasicUNet) and isinstance(pair.net2, SwinUNETR)
    out1, out2 = pair(torch.rand(3, 1, 64, 64))
    assert out1.shape == out2.shape == (3, 2, 64, 64)
    keys = set(pair.state_dict())
    assert keys == {f"net1.{k}" for k in pair.net1.state_dict()} | {f"net2.{k}" for k in pair.net2.state_dict()}
    n1, n2 = (sum(p.numel() for p in n.parameters()) for n in (pair.net1, pair.net2))
    assert sum(p.numel() for p in pair.parameters()) == n1 + n2


def test_factories_defaults_and_errors():
    unet = s4mi_unet(3, 2)
    assert unet.final_conv.out_channels == 2 and unet.conv_0.conv_0.conv.in_channels == 3
    with pytest.raises(ValueError, match="divisible by 32"):
        s4mi_swin_unet(3, 2, img_size=(224, 200))
    with pytest.raises(ValueError, match="divisible by 12"):
        s4mi_swin_unet(3, 2, feature_size=16)
    with pytest.raises(ValueError, match="torch.nn.Module"):
        CrossTeachingPair(unet, "swin")


def _s4mi_loss(out1, out2, y, lb, w):
    sup = DiceCELoss(softmax=True, to_onehot_y=True, squared_pred=True, batch=True, lambda_dice=0.5, lambda_ce=0.5)
    pseudo = DiceLoss(softmax=True, to_onehot_y=True, squared_pred=True, batch=True)
    p1, p2 = out1[lb:].detach().argmax(1, keepdim=True), out2[lb:].detach().argmax(1, keepdim=True)
    return sup(out1[:lb], y) + w * pseudo(out1[lb:], p2) + sup(out2[:lb], y) + w * pseudo(out2[lb:], p1)


def test_one_adam_over_the_pair_equals_two_adams(one_thread):
    """S4MI steps Adam(3.6e-4, wd 1e-5) + per-iteration cosine schedule on each network; one of each over the pair
    gives the same parameters (a large LR here so that the steps are far from round-off)."""
    g = torch.Generator().manual_seed(1)
    batches = [(torch.rand(4, 1, 64, 64, generator=g), torch.randint(0, 2, (2, 1, 64, 64), generator=g))
               for _ in range(3)]
    pair_a = _pair()
    pair_b = copy.deepcopy(pair_a)
    settings = {"lr": 1e-2, "weight_decay": 1e-5}
    one = torch.optim.Adam(pair_a.parameters(), **settings)
    two = [torch.optim.Adam(net.parameters(), **settings) for net in (pair_b.net1, pair_b.net2)]
    sched_one = torch.optim.lr_scheduler.CosineAnnealingLR(one, T_max=2, eta_min=5e-6)
    sched_two = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=2, eta_min=5e-6) for o in two]
    for x, y in batches:
        one.zero_grad()
        _s4mi_loss(*pair_a(x), y, 2, 0.1).backward()
        one.step()
        sched_one.step()
        for o in two:
            o.zero_grad()
        _s4mi_loss(*pair_b(x), y, 2, 0.1).backward()
        for o, s in zip(two, sched_two):
            o.step()
            s.step()
    start = _pair().state_dict()
    moved = 0
    for (name, pa), pb in zip(pair_a.named_parameters(), pair_b.parameters()):
        assert_allclose(pa, pb, rtol=1e-6, atol=1e-8, msg=name)
        moved += int(not torch.equal(pa, start[name]))
    assert moved == len(list(pair_a.parameters()))
