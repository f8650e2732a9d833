"""Stage 1: train the bone segmentation network (OT multi-decoder U-Net) on the radiographs with annotator masks."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.data import CacheDataset, DataLoader
from monai.utils import set_determinism

from monai_osteo.engines.hand_osteo.common import (
    BONES,
    atomic_save,
    atomic_write_json,
    datalist_items,
    resolve_device,
)
from monai_osteo.engines.hand_osteo.stage import PipelineStage
from monai_osteo.engines.ot_segmentation import OTSegmentationTrainer
from monai_osteo.handlers import GammaAnnealingHandler
from monai_osteo.losses import OTSegmentationLoss
from monai_osteo.networks.nets import MultiDecoderOTUNet

__all__ = ["SegmentationStage", "network_signature"]

logger = logging.getLogger("monai_osteo.hand_osteo")


def network_signature(net: torch.nn.Module) -> dict:
    """Architecture fingerprint (class, parameter names and shapes; not values) for stage settings."""
    shapes = [f"{k}:{tuple(v.shape)}" for k, v in net.state_dict().items()]
    return {"class": type(net).__name__, "parameters": len(shapes), "shapes_hash": hash_strings(shapes)}


def hash_strings(items: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


class SegmentationStage(PipelineStage):
    """Train ``network`` with the OT loss (Eqs. 7-9) and keep the checkpoint of the best validation Dice.

    Training uses the datalist entries of ``keys`` whose split is "training" (every radiograph with annotator
    masks: by default the unlabelled set and the labelled training subjects); validation those with split
    "validation"; the test subjects' radiographs are never used. With one hypothesis (``num_decoders = 1``,
    ``num_samples = 1``) it is the single-decoder U-Net baseline of the paper's Table 5.

    Outputs in ``output_dir``: ``model.pt`` (state dict), ``metrics.json`` (best validation consensus Dice, per
    bone, epoch, time), ``val_examples.png``.

    Args:
        datalist: MONAI datalist (see :func:`~monai_osteo.engines.hand_osteo.common.resolve_datalist`).
        output_dir: folder of the outputs.
        network: a :class:`~monai_osteo.networks.nets.MultiDecoderOTUNet`.
        spatial_size: (H, W) the radiographs are resized to.
        max_epochs, batch_size, lr: Adam training settings.
        gamma0: initial OT capacity; ``None`` = 1/N (N hypotheses), annealed to 1 over ``anneal_epochs``.
        lam: weight of the router's KL term.
        keys: datalist keys to take radiographs from.
        limit: at most this many radiographs per key and split (tests).
        val_interval: validate every this many epochs (and after the last).
        seed: seed of ``monai.utils.set_determinism``.
        device: "auto", "cpu", "cuda", ...
        resume: skip if finished with the same settings.

    - [0] hand_xray_osteoporosis_journal, §"Bone segmentation" and Table 5.
    """

    name = "segmentation"

    def __init__(self, datalist: str | os.PathLike, output_dir: str | os.PathLike, network: MultiDecoderOTUNet,
                 spatial_size: Sequence[int] = (256, 176), max_epochs: int = 30, batch_size: int = 4,
                 lr: float = 3e-3, gamma0: float | None = None, anneal_epochs: float = 20.0, lam: float = 1.0,
                 keys: Sequence[str] = ("unlabeled", "training"), limit: int | None = None, val_interval: int = 1,
                 seed: int = 0, device: str = "auto", resume: bool = True) -> None:
        super().__init__(output_dir, resume)
        if not isinstance(network, MultiDecoderOTUNet):
            raise ValueError(f"network must be a MultiDecoderOTUNet, got {type(network).__name__}.")
        if len(spatial_size) != 2 or min(spatial_size) < 16:
            raise ValueError(f"spatial_size must be (H, W) >= 16, got {spatial_size!r}.")
        if max_epochs < 1 or batch_size < 1 or lr <= 0:
            raise ValueError(f"max_epochs, batch_size must be >= 1 and lr > 0, got {max_epochs}, {batch_size}, {lr}.")
        self.datalist = Path(datalist)
        self.network = network
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.max_epochs, self.batch_size, self.lr = int(max_epochs), int(batch_size), float(lr)
        self.gamma0, self.anneal_epochs, self.lam = gamma0, float(anneal_epochs), float(lam)
        self.keys, self.limit, self.val_interval = tuple(keys), limit, max(1, int(val_interval))
        self.seed = int(seed)
        self.device = resolve_device(device)

    @property
    def checkpoint(self) -> Path:
        return self.output_dir / "model.pt"

    def settings(self) -> dict:
        return {"datalist": str(self.datalist.resolve()), "network": network_signature(self.network),
                "spatial_size": self.spatial_size, "max_epochs": self.max_epochs, "batch_size": self.batch_size,
                "lr": self.lr, "gamma0": self.gamma0, "anneal_epochs": self.anneal_epochs, "lam": self.lam,
                "keys": self.keys, "limit": self.limit, "seed": self.seed}

    def trained_network(self) -> MultiDecoderOTUNet:
        """The network with the stage's best checkpoint loaded (runs the stage first if needed)."""
        if not self.checkpoint.is_file():
            self.run()
        self.network.load_state_dict(torch.load(self.checkpoint, map_location="cpu"))
        return self.network.eval()

    def _loader(self, split: str, train: bool) -> DataLoader:
        from monai_osteo.engines.segmentation_run import segmentation_transforms

        items = [{k: d[k] for k in ("image", "masks", "mask_weights") if k in d}
                 for d in datalist_items(self.datalist, self.keys, [split], self.limit) if d.get("masks")]
        if not items:
            raise ValueError(f"{self.datalist}: no radiographs with annotator masks ('masks') in keys {self.keys} "
                             f"with split {split!r}; the segmentation stage needs them (see docs/README.md).")
        ds = CacheDataset(items, segmentation_transforms(self.spatial_size, train), progress=False, num_workers=0)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=train, num_workers=0)

    def _run(self) -> dict:
        from monai_osteo.engines.segmentation_run import evaluator_for, save_examples

        set_determinism(self.seed)
        net = self.network.to(self.device)
        train_loader, val_loader = self._loader("training", True), self._loader("validation", False)
        n_hyp = net.num_decoders * net.num_samples
        gamma0 = (1.0 / n_hyp if self.gamma0 is None else self.gamma0) if n_hyp > 1 else 1.0
        loss = OTSegmentationLoss(gamma=gamma0, lam=self.lam)
        trainer = OTSegmentationTrainer(device=self.device, max_epochs=self.max_epochs, train_data_loader=train_loader,
                                        network=net, optimizer=torch.optim.Adam(net.parameters(), lr=self.lr),
                                        loss_function=loss)
        if n_hyp > 1:
            GammaAnnealingHandler(gamma0=gamma0, anneal_epochs=self.anneal_epochs).attach(trainer)
        num_classes = net.out_channels
        val = evaluator_for(net, val_loader, self.device, num_classes, None)
        best = {"dice": -1.0, "epoch": 0, "dice_per_bone": []}
        start = time.perf_counter()

        @trainer.on(Events.EPOCH_COMPLETED)
        def _validate(engine) -> None:
            if engine.state.epoch % self.val_interval and engine.state.epoch != self.max_epochs:
                return
            val.run()
            dice = float(val.state.metrics["dice"])
            logger.info("segmentation epoch %d/%d loss %.4f | val consensus Dice %.4f GED %.4f (%.0f s)",
                        engine.state.epoch, self.max_epochs, float(engine.state.output["loss"]), dice,
                        float(val.state.metrics["ged"]), time.perf_counter() - start)
            if dice > best["dice"]:
                per_bone = np.asarray(val.state.metrics["dice_per_bone"], dtype=float).ravel().tolist()
                best.update(dice=dice, epoch=engine.state.epoch, dice_per_bone=dict(zip(BONES, per_bone)))
                atomic_save(net.state_dict(), self.checkpoint)

        trainer.run()
        net.load_state_dict(torch.load(self.checkpoint, map_location=self.device))
        save_examples(net, val_loader, self.output_dir / "val_examples.png", num_classes, None)
        result = {"model": "single-decoder U-Net" if n_hyp == 1 else
                  f"OT multi-decoder U-Net (K={net.num_decoders}, S={net.num_samples})",
                  "val_dice": best["dice"], "val_dice_per_bone": best["dice_per_bone"], "best_epoch": best["epoch"],
                  "train_images": len(train_loader.dataset), "val_images": len(val_loader.dataset),
                  "train_seconds": round(time.perf_counter() - start, 1)}
        atomic_write_json(self.output_dir / "metrics.json", result)
        net.eval()
        return result
