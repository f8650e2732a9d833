"""Anneal the capacity gamma of the OT segmentation loss from gamma0 < 1 to 1 (paper Eq. 9).

- [0] hand_xray_osteoporosis_journal, §"Imbalanced constraint relaxation": "we begin with a value gamma0 < 1 and
  gradually anneal it to 1 (effectively removing the constraint)".
"""

from __future__ import annotations

import logging
import math

from ignite.engine import Engine, Events

__all__ = ["GammaAnnealingHandler", "gamma_schedule"]

logger = logging.getLogger(__name__)


def gamma_schedule(progress: float, gamma0: float, schedule: str = "linear") -> float:
    """gamma at ``progress`` in [0, 1] of the annealing period (1 afterwards)."""
    t = min(max(float(progress), 0.0), 1.0)
    if schedule == "linear":
        w = t
    elif schedule == "cosine":
        w = 0.5 * (1.0 - math.cos(math.pi * t))
    elif schedule == "step":
        w = 1.0 if t >= 1.0 else 0.0
    else:
        raise ValueError(f"schedule must be 'linear', 'cosine' or 'step', got {schedule!r}.")
    return gamma0 + (1.0 - gamma0) * w


class GammaAnnealingHandler:
    """Set ``loss.gamma`` before every iteration, from ``gamma0`` to 1 over ``anneal_epochs`` epochs.

    Args:
        gamma0: starting capacity; must satisfy ``1/N <= gamma0 <= 1`` for N predicted samples (the loss checks).
        anneal_epochs: epochs (may be fractional) over which gamma reaches 1.
        schedule: "linear", "cosine" or "step".
        loss: object with a ``gamma`` attribute; default ``engine.loss_function``.

    The current value is also stored as ``engine.state.gamma`` (and in the iteration output when it is a dict).
    """

    def __init__(self, gamma0: float = 0.5, anneal_epochs: float = 10.0, schedule: str = "linear", loss=None) -> None:
        if not 0.0 < gamma0 <= 1.0:
            raise ValueError(f"gamma0 must be in (0, 1], got {gamma0!r}.")
        if anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be >= 0, got {anneal_epochs!r}.")
        gamma_schedule(0.0, gamma0, schedule)  # validates schedule
        self.gamma0, self.anneal_epochs, self.schedule, self.loss = gamma0, anneal_epochs, schedule, loss

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._log)

    def __call__(self, engine: Engine) -> None:
        loss = self.loss if self.loss is not None else engine.loss_function
        if not hasattr(loss, "gamma"):
            raise ValueError(f"the loss must have a 'gamma' attribute (e.g. OTSegmentationLoss), got {type(loss)!r}.")
        epoch_length = engine.state.epoch_length or 1
        done = (engine.state.iteration - 1) / epoch_length
        progress = 1.0 if self.anneal_epochs == 0 else done / self.anneal_epochs
        loss.gamma = engine.state.gamma = gamma_schedule(progress, self.gamma0, self.schedule)

    def _log(self, engine: Engine) -> None:
        logger.info("epoch %d: OT capacity gamma = %.4f", engine.state.epoch, getattr(engine.state, "gamma", 1.0))
