"""Shared optimisation step of the trainers that override ``SupervisedTrainer._iteration``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

__all__ = ["optimisation_step"]


def optimisation_step(engine, forward: Callable[[], None]) -> None:
    """Train mode, zero grads, ``forward()`` (which must set ``engine.state.output["loss"]`` and fire the forward and
    loss events), backward (scaled under AMP) and the optimiser step, firing ``BACKWARD_COMPLETED`` as MONAI's
    ``SupervisedTrainer`` does."""
    engine.network.train()
    engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
    if engine.amp and engine.scaler is not None:
        with torch.autocast("cuda", **engine.amp_kwargs):
            forward()
        engine.scaler.scale(engine.state.output[Keys.LOSS]).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.scaler.step(engine.optimizer)
        engine.scaler.update()
    else:
        forward()
        engine.state.output[Keys.LOSS].backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.optimizer.step()
