"""Reduced OT U-Net training to completion, the single-decoder baseline, and the trainer/evaluator outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset

from monai_osteo.engines import OTSegmentationEvaluator, OTSegmentationTrainer
from monai_osteo.engines.segmentation_run import main as segmentation_main
from monai_osteo.handlers import GammaAnnealingHandler
from monai_osteo.losses import OTSegmentationLoss
from monai_osteo.networks.nets import MultiDecoderOTUNet

TINY = ["--images", "30", "--cohort-height", "128", "--height", "64", "--width", "48", "--channels", "4", "8", "16",
        "16", "16", "--head-channels", "8", "--epochs", "2", "--batch", "4", "--anneal-epochs", "1"]


@pytest.mark.parametrize("model", [["--decoders", "2", "--samples", "2", "--latent", "3"],
                                   ["--decoders", "1", "--samples", "1", "--latent", "0"]])
def test_reduced_training_runs_to_completion(tmp_path, model):
    out = tmp_path / "seg"
    assert segmentation_main(["--out", str(out), *TINY, *model]) == 0
    res = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= res["dice_mean"] <= 1.0 and np.isfinite(res["ged"]) and res["ged"] >= -1e-6
    assert set(res["dice_per_bone"]) == {"ulna", "radius", "M1", "M2", "M3", "M4", "M5"}
    assert res["test_images"] == 3 and (out / "model.pt").is_file()
    assert (out / "test_examples.png").read_bytes()[:4] == b"\x89PNG"


def _batches(n: int = 4):
    g = torch.Generator().manual_seed(0)
    data = [{"image": torch.rand(1, 32, 32, generator=g), "masks": torch.randint(0, 3, (3, 32, 32), generator=g),
             "mask_weights": torch.tensor([0.5, 0.3, 0.2])} for _ in range(n)]
    return DataLoader(Dataset(data), batch_size=2)


def test_trainer_outputs_and_gamma_annealing():
    net = MultiDecoderOTUNet(2, 1, 3, channels=(4, 8, 8, 8, 8), num_decoders=2, num_samples=2, latent_dim=2)
    loss = OTSegmentationLoss(gamma=0.5)
    trainer = OTSegmentationTrainer(device=torch.device("cpu"), max_epochs=2, train_data_loader=_batches(),
                                    network=net, optimizer=torch.optim.Adam(net.parameters(), 1e-3),
                                    loss_function=loss)
    GammaAnnealingHandler(gamma0=0.5, anneal_epochs=1).attach(trainer)
    gammas = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: gammas.append(e.state.output["gamma"]))
    trainer.run()
    out = trainer.state.output
    assert out["pred"].shape == (2, 3, 32, 32) and out["label"].shape == (2, 3, 32, 32)
    assert np.isfinite(out["cost"]) and np.isfinite(out["kl"]) and out["loss"].ndim == 0
    assert gammas == [0.5, 0.75, 1.0, 1.0]
    evaluator = OTSegmentationEvaluator(device=torch.device("cpu"), val_data_loader=_batches(2), network=net,
                                        num_samples=3)
    evaluator.run()
    o = evaluator.state.output
    assert o["samples"].shape == (2, 6, 32, 32) and o["alpha"].shape == (2, 6)
    assert torch.allclose(o["alpha"].sum(1), torch.ones(2))


def test_trainer_rejects_bad_batches():
    net = MultiDecoderOTUNet(2, 1, 3, channels=(4, 8, 8, 8, 8), num_decoders=1, num_samples=1, latent_dim=0)
    bad = DataLoader(Dataset([{"image": torch.rand(1, 32, 32), "masks": torch.zeros(3, 16, 16)}]), batch_size=1)
    trainer = OTSegmentationTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=bad, network=net,
                                    optimizer=torch.optim.Adam(net.parameters()), loss_function=OTSegmentationLoss())
    with pytest.raises(ValueError, match="matching the image"):
        trainer.run()
