"""CrossTeachingTrainer against a plain-torch re-computation of the S4MI/SSL4MIS losses, gradients, learning, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.engines.utils import IterationEvents
from monai.losses import DiceCELoss, DiceLoss

from monai_osteo.engines.s4mi.cross_teaching import CrossTeachingTrainer
from monai_osteo.handlers.consistency_rampup import ConsistencyRampupHandler
from monai_osteo.losses.ce_dice import WeightedCEDiceLoss
from monai_osteo.networks.nets.cross_teaching import CrossTeachingPair, s4mi_swin_unet, s4mi_unet
from tests.utils import assert_allclose

CPU = torch.device("cpu")


def ssl4mis_dice(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSL4MIS ``DiceLoss(n_classes)(probs, target)``: per class 1 - (2 sum st + 1e-5) / (sum s^2 + sum t^2 + 1e-5)
    over the whole batch, mean over the classes including the background."""
    loss = probs.new_zeros(())
    for c in range(probs.shape[1]):
        s, t = probs[:, c], (target[:, 0] == c).float()
        loss = loss + 1 - (2 * (s * t).sum() + 1e-5) / ((s * s).sum() + (t * t).sum() + 1e-5)
    return loss / probs.shape[1]


def ssl4mis_losses(out1, out2, y, lb, w, ce_weight=None) -> dict:
    """``train_CT_between_cnn_transformer_2D.py``, lines 283-307."""
    s1, s2 = torch.softmax(out1, 1), torch.softmax(out2, 1)
    loss1 = 0.5 * (F.cross_entropy(out1[:lb], y[:lb, 0].long(), weight=ce_weight) + ssl4mis_dice(s1[:lb], y[:lb]))
    loss2 = 0.5 * (F.cross_entropy(out2[:lb], y[:lb, 0].long(), weight=ce_weight) + ssl4mis_dice(s2[:lb], y[:lb]))
    p1 = torch.argmax(s1[lb:].detach(), dim=1, keepdim=True)
    p2 = torch.argmax(s2[lb:].detach(), dim=1, keepdim=True)
    ps1, ps2 = ssl4mis_dice(s1[lb:], p2), ssl4mis_dice(s2[lb:], p1)
    return {"loss1": loss1, "loss2": loss2, "ps1": ps1, "ps2": ps2, "loss": loss1 + w * ps1 + loss2 + w * ps2}


def _sup_loss(weight=None) -> DiceCELoss:
    return DiceCELoss(softmax=True, to_onehot_y=True, squared_pred=True, batch=True, lambda_dice=0.5, lambda_ce=0.5,
                      weight=weight)


def _pair(seed: int = 0) -> CrossTeachingPair:
    torch.manual_seed(seed)
    return CrossTeachingPair(s4mi_unet(1, 2, features=(4, 4, 8, 8, 16, 4), dropout=0.0),
                             s4mi_swin_unet(1, 2, img_size=64, feature_size=12))


def _blobs(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright discs on a noisy background: images (n, 1, s, s), labels (n, 1, s, s)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.stack([((yy - rng.uniform(8, size - 8)) ** 2 + (xx - rng.uniform(8, size - 8)) ** 2
                        < rng.uniform(4, size / 4) ** 2) for _ in range(n)])[:, None].astype(np.float32)
    images = 0.3 + 0.4 * labels + 0.15 * rng.standard_normal(labels.shape).astype(np.float32)
    return torch.as_tensor(images), torch.as_tensor(labels)


def _batch(b: int = 5, lb: int = 3, size: int = 64, seed: int = 0) -> dict:
    image, label = _blobs(b, size, seed)
    label[lb:] = 1.0  # placeholder labels of the unlabelled images: must be ignored
    return {"image": image, "label": label}


def _trainer(pair, batches, lb=3, loss=None, lr=1e-3, handler=None, max_epochs=1, **kwargs) -> CrossTeachingTrainer:
    trainer = CrossTeachingTrainer(device=CPU, max_epochs=max_epochs, train_data_loader=batches, network=pair,
                                   optimizer=torch.optim.Adam(pair.parameters(), lr, weight_decay=1e-5),
                                   loss_function=loss or _sup_loss(), labeled_batch_size=lb, **kwargs)
    (handler or ConsistencyRampupHandler(consistency=0.3, mode="constant")).attach(trainer)
    return trainer


@pytest.mark.parametrize("ce_weight", [None, torch.tensor([0.6, 3.0])])
def test_loss_and_gradients_equal_the_ssl4mis_formulas(one_thread, ce_weight):
    pair, batch = _pair(), _batch()
    ref = copy.deepcopy(pair)
    oracle = ssl4mis_losses(*ref(batch["image"]), batch["label"], 3, 0.3, ce_weight)
    oracle["loss"].backward()
    loss = _sup_loss() if ce_weight is None else WeightedCEDiceLoss(ce_weight)
    trainer = _trainer(pair, [batch], loss=loss)
    grads = {}
    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, lambda e: grads.update(
        {n: p.grad.clone() for n, p in e.network.named_parameters()}))
    trainer.run()
    out = trainer.state.output
    for key in ("loss1", "loss2", "ps1", "ps2"):
        assert isinstance(out[key], float)
        assert_allclose(out[key], float(oracle[key].detach()), rtol=1e-5, msg=key)
    assert_allclose(out["loss"], float(oracle["loss"].detach()), rtol=1e-5)
    assert out["consistency_weight"] == 0.3 and not out["loss"].requires_grad
    assert out["pred"].shape == (3, 2, 64, 64) and out["label"].shape == (3, 1, 64, 64) and out["image"].shape[0] == 3
    assert_allclose(out["label"], batch["label"][:3])
    for name, p in ref.named_parameters():
        assert_allclose(grads[name], p.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_monai_losses_vs_ssl4mis_dice_and_the_weight_caveat():
    g = torch.Generator().manual_seed(3)
    logits, y = torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 3, (4, 1, 8, 8), generator=g)
    pseudo = DiceLoss(softmax=True, to_onehot_y=True, squared_pred=True, batch=True)
    assert_allclose(pseudo(logits, y), ssl4mis_dice(torch.softmax(logits, 1), y), rtol=1e-6)
    plain = 0.5 * (F.cross_entropy(logits, y[:, 0]) + ssl4mis_dice(torch.softmax(logits, 1), y))
    assert_allclose(_sup_loss()(logits, y), plain, rtol=1e-6)
    # MONAI 1.6 DiceCELoss(weight=w) weights the Dice classes too (S4MI weights only the CE): not the S4MI loss
    w = torch.tensor([0.5, 1.0, 4.0])
    dice_c = DiceLoss(softmax=True, to_onehot_y=True, squared_pred=True, batch=True, reduction="none")(logits, y)
    weighted = 0.5 * F.cross_entropy(logits, y[:, 0], weight=w) + 0.5 * (w * dice_c.flatten()).mean()
    assert_allclose(_sup_loss(w)(logits, y), weighted, rtol=1e-6)
    assert_allclose(WeightedCEDiceLoss(w)(logits, y.float()), 0.5 * (F.cross_entropy(logits, y[:, 0], weight=w)
                                                             + ssl4mis_dice(torch.softmax(logits, 1), y)), rtol=1e-6)


class _GradientProbe:
    """Pseudo-supervision loss that records, at each call, whether its pseudo-labels carry a graph and which network
    its value depends on (calls: ps1 = Dice(net1 logits, net2 labels), then ps2)."""

    def __init__(self, pair: CrossTeachingPair) -> None:
        self.pair, self.dice, self.calls = pair, DiceLoss(softmax=True, to_onehot_y=True, squared_pred=True,
                                                          batch=True), []

    def __call__(self, logits, target):
        loss = self.dice(logits, target)
        nets = (self.pair.net1, self.pair.net2) if not self.calls else (self.pair.net2, self.pair.net1)
        own, other = (torch.autograd.grad(loss, list(n.parameters()), retain_graph=True, allow_unused=True)
                      for n in nets)
        self.calls.append({"target_grad": target.requires_grad,
                           "own": sum(float(g.abs().sum()) for g in own if g is not None),
                           "other": [g for g in other if g is not None and bool(g.any())]})
        return loss


def test_pseudo_labels_are_detached(one_thread):
    pair = _pair()
    probe = _GradientProbe(pair)
    _trainer(pair, [_batch()], pseudo_loss_function=probe).run()
    assert len(probe.calls) == 2
    for call in probe.calls:
        assert not call["target_grad"] and call["own"] > 0 and call["other"] == []


def test_fully_labelled_batch_has_no_pseudo_term(one_thread):
    pair, batch = _pair(), _batch(b=3, lb=3)
    oracle = ssl4mis_losses(*copy.deepcopy(pair)(batch["image"]), batch["label"], 3, 0.3)
    trainer = _trainer(pair, [batch])
    trainer.run()
    out = trainer.state.output
    assert out["ps1"] == 0.0 and out["ps2"] == 0.0
    assert_allclose(out["loss"], float((oracle["loss1"] + oracle["loss2"]).detach()), rtol=1e-5)


def test_weight_follows_the_rampup_and_unbatched_labels(one_thread):
    pair = _pair()
    batches = [_batch(seed=s) for s in range(3)]
    for b in batches:
        b["label"] = b["label"][:, 0]  # (B, H, W) labels are accepted
    handler = ConsistencyRampupHandler(consistency=0.1, rampup_length=2, divisor=1)
    trainer = _trainer(pair, batches, handler=handler)
    seen = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.output["consistency_weight"]))
    trainer.run()
    assert seen == [handler.weight(i) for i in (1, 2, 3)] and seen[-1] == pytest.approx(0.1)


def test_errors(one_thread):
    with pytest.raises(ValueError, match="labeled_batch_size must be an integer >= 1"):
        _trainer(_pair(), [_batch()], lb=0)
    no_handler = CrossTeachingTrainer(device=CPU, max_epochs=1, train_data_loader=[_batch()], network=_pair(),
                                      optimizer=torch.optim.Adam(_pair().parameters()), loss_function=_sup_loss(),
                                      labeled_batch_size=3)
    with pytest.raises(ValueError, match="ConsistencyRampupHandler"):
        no_handler.run()
    with pytest.raises(ValueError, match=r"labeled_batch_size \(6\) must be <= the batch size"):
        _trainer(_pair(), [_batch()], lb=6).run()
    with pytest.raises(ValueError, match="batch must contain 'label'"):
        _trainer(_pair(), [{"image": _batch()["image"]}]).run()
    with pytest.raises(ValueError, match="matching the image"):
        _trainer(_pair(), [{"image": _batch()["image"], "label": torch.zeros(5, 1, 32, 32)}]).run()
    with pytest.raises(ValueError, match="at least labeled_batch_size=3"):
        _trainer(_pair(), [{"image": _batch()["image"], "label": torch.zeros(2, 1, 64, 64)}]).run()


def _foreground_dice(net, image, label) -> float:
    with torch.no_grad():
        pred = net.eval()(image).argmax(1, keepdim=True).float()
    return float(2 * (pred * label).sum() / (pred.sum() + label.sum()))


def test_cross_teaching_learns_blobs(one_thread):
    """4 labelled + 4 unlabelled 32x32 blob images per batch, 30 iterations: the loss falls, net1's Dice rises."""
    torch.manual_seed(0)
    pair = CrossTeachingPair(s4mi_unet(1, 2, features=(4, 4, 8, 8, 16, 4), dropout=0.0),
                             s4mi_unet(1, 2, features=(4, 8, 8, 16, 16, 4), dropout=0.0))
    images, labels = _blobs(80, 32, seed=1)
    batches = [{"image": images[i:i + 8], "label": labels[i:i + 8]} for i in range(0, 80, 8)]
    test_image, test_label = _blobs(16, 32, seed=2)
    before = _foreground_dice(pair.net1, test_image, test_label)
    trainer = _trainer(pair, batches, lb=4, lr=1e-2, handler=ConsistencyRampupHandler(0.1, mode="constant"))
    trainer.state.max_epochs = 3
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output["loss"])))
    trainer.run()
    after = _foreground_dice(pair.net1, test_image, test_label)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses
    assert after > 0.8 and after > before + 0.3, (before, after)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP needs CUDA")
def test_amp_step_on_cuda():
    dev = torch.device("cuda")
    pair = _pair().to(dev)
    trainer = CrossTeachingTrainer(device=dev, max_epochs=2, train_data_loader=[_batch(), _batch(seed=1)], network=pair,
                                   optimizer=torch.optim.Adam(pair.parameters(), 1e-3), loss_function=_sup_loss(),
                                   labeled_batch_size=3, amp=True)
    ConsistencyRampupHandler(0.1, mode="constant").attach(trainer)
    start = [p.detach().clone() for p in pair.parameters()]
    trainer.run()
    out = trainer.state.output
    assert all(np.isfinite(out[k]) for k in ("loss1", "loss2", "ps1", "ps2")) and out["ps1"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(start, pair.parameters()))


def test_the_two_stream_batches_are_reshuffled_every_epoch(one_thread):
    """MONAI's Workflow only calls set_epoch on a DistributedSampler; the trainer does it for the batch sampler."""
    from monai.data import DataLoader

    from monai_osteo.data.samplers import TwoStreamBatchSampler

    images, labels = _blobs(12, 32, seed=5)
    data = [{"image": images[i], "label": labels[i], "index": i} for i in range(12)]
    sampler = TwoStreamBatchSampler(list(range(6)), list(range(6, 12)), batch_size=4, secondary_batch_size=2, seed=0)
    loader = DataLoader(data, batch_sampler=sampler)
    torch.manual_seed(0)
    pair = CrossTeachingPair(s4mi_unet(1, 2, features=(4, 4, 8, 8, 16, 4), dropout=0.0),
                             s4mi_unet(1, 2, features=(4, 4, 8, 8, 16, 4), dropout=0.0))
    trainer = _trainer(pair, loader, lb=2, max_epochs=3)
    seen: list[list[int]] = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.batch["index"].tolist()))
    trainer.run()
    per_epoch = len(sampler)
    epochs = [seen[k * per_epoch:(k + 1) * per_epoch] for k in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    for e, batches in enumerate(epochs, start=1):
        sampler.set_epoch(e)
        assert batches == [list(b) for b in sampler]
