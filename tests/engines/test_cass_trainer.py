"""CASSTrainer: the same image to both arms, outputs (loss = 2 - 2 cosine), one Adam = the CASS code's two Adams,
a short learning run through a real DataLoader, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset

from monai_osteo.engines.s4mi.cass import CASSTrainer
from monai_osteo.losses.cass import CASSLoss
from monai_osteo.networks.nets.s4mi_backbones import s4mi_classifier
from monai_osteo.networks.nets.s4mi_ssl import CASSNetwork
from tests.utils import assert_allclose

pytestmark = pytest.mark.usefixtures("one_thread")


def cass_net(seed: int = 0) -> CASSNetwork:
    torch.manual_seed(seed)
    return CASSNetwork(
        s4mi_classifier("resnet18", img_size=32),
        s4mi_classifier("vit_tiny", img_size=32, patch_size=8),
        projection_dim=16,
    )


def blob_images(n: int = 16, size: int = 32) -> torch.Tensor:
    """Random discs of random colour on noise (images that differ from one another)."""
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij")
    c, r = torch.rand(n, 2, generator=gen) * size, 3 + torch.rand(n, generator=gen) * 8
    disc = ((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2 < r[:, None, None] ** 2).float()
    return disc[:, None] * torch.rand(n, 3, 1, 1, generator=gen) + 0.2 * torch.rand(n, 3, size, size, generator=gen)


class _Augment:
    """One augmented view (random flips + noise) of ``d["image"]``, seeded."""

    def __init__(self):
        self.gen = torch.Generator().manual_seed(1)

    def __call__(self, d: dict) -> dict:
        x = d["image"]
        for dim in (-1, -2):
            if torch.rand((), generator=self.gen) < 0.5:
                x = x.flip(dim)
        return {"image": x + 0.05 * torch.randn(x.shape, generator=self.gen), "label": torch.tensor(0)}


def trainer_for(net: CASSNetwork, epochs: int, lr: float = 1e-3, n: int = 16) -> tuple[CASSTrainer, list[dict]]:
    loader = DataLoader(Dataset([{"image": x} for x in blob_images(n)], transform=_Augment()), batch_size=8)
    trainer = CASSTrainer(
        device=torch.device("cpu"), max_epochs=epochs, train_data_loader=loader, network=net,
        loss_function=CASSLoss(), optimizer=torch.optim.Adam(net.parameters(), lr=lr),
    )
    outputs: list[dict] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    return trainer, outputs


def test_same_image_to_both_arms_and_outputs():
    net = cass_net()
    seen = {}
    net.cnn.register_forward_pre_hook(lambda m, a: seen.__setitem__("cnn", a[0].clone()))
    net.vit.register_forward_pre_hook(lambda m, a: seen.__setitem__("vit", a[0].clone()))
    trainer, outputs = trainer_for(net, epochs=1, n=8)
    trainer.run()
    assert torch.equal(seen["cnn"], seen["vit"]) and tuple(seen["cnn"].shape) == (8, 3, 32, 32)
    (out,) = outputs
    assert sorted(out) == ["cosine", "loss"] and not out["loss"].requires_grad and not out["cosine"].requires_grad
    assert_allclose(out["loss"], 2 - 2 * out["cosine"], rtol=1e-5, atol=1e-6)


def test_one_adam_equals_one_adam_per_arm():
    net = cass_net()
    twin = copy.deepcopy(net)
    image = blob_images(4)
    one = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    two = [torch.optim.Adam(arm.parameters(), lr=1e-3, weight_decay=1e-4) for arm in (twin.cnn, twin.vit)]
    for _ in range(2):
        for model, opts in ((net, [one]), (twin, two)):
            for o in opts:
                o.zero_grad()
            out = model(image)
            CASSLoss()(out["cnn"], out["vit"]).backward()
            for o in opts:
                o.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_cass_loss_goes_down_in_the_trainer():
    trainer, outputs = trainer_for(cass_net(), epochs=10)  # 20 iterations of batch 8
    trainer.run()
    losses = [o["loss"].item() for o in outputs]
    assert len(losses) == 20
    first, last = sum(losses[:2]) / 2, sum(losses[-3:]) / 3
    assert first > 0.5 and last < 0.25 * first, losses
    assert outputs[-1]["cosine"].item() > 0.9


def test_errors():
    trainer, _ = trainer_for(cass_net(), epochs=1)
    with pytest.raises(ValueError, match="'image'"):
        trainer._iteration(trainer, {"img": torch.zeros(1, 3, 32, 32)})
    with pytest.raises(ValueError, match="Must provide batch data"):
        trainer._iteration(trainer, None)
