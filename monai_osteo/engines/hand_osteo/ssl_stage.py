"""Stage 3: self-supervised pretraining of the encoder on bone patches (the trainer is built by the bundle config)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
from ignite.engine import Events

from monai_osteo.engines.hand_osteo.common import atomic_save, atomic_write_json
from monai_osteo.engines.hand_osteo.stage import PipelineStage

__all__ = ["SSLStage"]

logger = logging.getLogger("monai_osteo.hand_osteo")


class SSLStage(PipelineStage):
    """Run a :class:`~monai_osteo.engines.MultiViewSSLTrainer` unless a checkpoint with the same settings exists.

    Outputs: ``model.pt`` (the SSL network's state dict: encoder + head) and ``metrics.json`` (loss per epoch,
    patches, time). ``enabled=False`` (the supervised-only ablation) skips pretraining: no checkpoint.

    Args:
        trainer: the SSL trainer (its network is saved).
        output_dir: folder of the outputs.
        patches: the patch stage (its settings are part of this stage's).
        settings: the method's hyperparameters as configured (method, views, batch size, optimiser...).
        enabled: False skips pretraining.
        resume: skip when done with the same settings.
    """

    name = "ssl"

    def __init__(self, trainer, output_dir: str | os.PathLike, patches, settings: dict | None = None,
                 enabled: bool = True, resume: bool = True) -> None:
        super().__init__(output_dir, resume)
        self.trainer, self.patches, self._settings, self.enabled = trainer, patches, dict(settings or {}), enabled

    @property
    def checkpoint(self) -> Path | None:
        return self.output_dir / "model.pt" if self.enabled else None

    def settings(self) -> dict:
        return {"patches": self.patches.settings(), "enabled": self.enabled, **self._settings}

    def _run(self) -> dict:
        if not self.enabled:
            logger.info("ssl: disabled (supervised-only ablation), no pretraining")
            atomic_write_json(self.output_dir / "metrics.json", {"enabled": False})
            return {"enabled": False}
        losses: list[float] = []
        running = {"sum": 0.0, "n": 0}

        def _iter(engine) -> None:
            running["sum"] += float(engine.state.output["loss"])
            running["n"] += 1

        def _epoch(engine) -> None:
            losses.append(running["sum"] / max(running["n"], 1))
            running.update(sum=0.0, n=0)
            logger.info("ssl epoch %d/%d: mean loss %.4f", engine.state.epoch, engine.state.max_epochs, losses[-1])

        self.trainer.add_event_handler(Events.ITERATION_COMPLETED, _iter)
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED, _epoch)
        start = time.perf_counter()
        try:
            self.trainer.run()
        finally:
            self.trainer.remove_event_handler(_iter, Events.ITERATION_COMPLETED)
            self.trainer.remove_event_handler(_epoch, Events.EPOCH_COMPLETED)
        net = self.trainer.network
        state = (net.module if hasattr(net, "module") else net).state_dict()
        if _is_main_process():
            atomic_save({k: v.detach().cpu() for k, v in state.items()}, self.checkpoint)
        result = {"enabled": True, "epoch_losses": losses, "patches": len(self.trainer.data_loader.dataset),
                  "iterations": int(self.trainer.state.iteration),
                  "train_seconds": round(time.perf_counter() - start, 1),
                  **self._settings}
        if _is_main_process():
            atomic_write_json(self.output_dir / "metrics.json", result)
        return result


def _is_main_process() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0
