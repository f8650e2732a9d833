"""Ramp the cross-teaching consistency weight w(t) up during training (Laine & Aila's sigmoid ramp-up).

S4MI / SSL4MIS: ``w = 0.1 * sigmoid_rampup(iter_num // 150, 200)`` with ``iter_num`` = iterations done before the
current one, so w reaches 0.1 only after 30,000 iterations (≈ 0.0106 at the code's last iteration, 10,000).

- [0] Laine & Aila, 2017, Temporal Ensembling for Semi-Supervised Learning (ICLR), ramp-up exp(-5 (1 - T)^2).
- [1] Singh et al., 2024, Shifting to machine supervision (Sci. Rep.); S4MI ``train_CT_between_cnn_transformer_2D.py``.
"""

from __future__ import annotations

import logging
import math

from ignite.engine import Engine, Events

__all__ = ["ConsistencyRampupHandler", "linear_rampup", "sigmoid_rampup"]

logger = logging.getLogger(__name__)

_MODES = ("sigmoid", "linear", "constant")


def sigmoid_rampup(current: float, rampup_length: float) -> float:
    """``exp(-5 (1 - clip(current, 0, L) / L)^2)``; 1 when ``L == 0``."""
    if rampup_length == 0:
        return 1.0
    phase = 1.0 - min(max(float(current), 0.0), float(rampup_length)) / float(rampup_length)
    return math.exp(-5.0 * phase * phase)


def linear_rampup(current: float, rampup_length: float) -> float:
    """``clip(current / L, 0, 1)``; 1 when ``L == 0``."""
    if rampup_length == 0:
        return 1.0
    return min(max(float(current) / float(rampup_length), 0.0), 1.0)


class ConsistencyRampupHandler:
    """Set ``engine.state.consistency_weight`` at the start of every iteration.

    ``w = consistency * rampup((iteration - 1) // divisor, rampup_length)``, computed from ``engine.state.iteration``
    alone, so a resumed run continues the ramp where it stopped.

    Args:
        consistency: final weight (S4MI 0.1).
        rampup_length: ramp length L in units of ``divisor`` iterations (S4MI 200).
        divisor: iterations per ramp step (S4MI 150).
        mode: ``"sigmoid"`` (Laine & Aila, S4MI), ``"linear"`` or ``"constant"`` (w = consistency throughout).
    """

    def __init__(self, consistency: float = 0.1, rampup_length: float = 200.0, divisor: int = 150,
                 mode: str = "sigmoid") -> None:
        if consistency < 0:
            raise ValueError(f"consistency must be >= 0, got {consistency!r}.")
        if rampup_length < 0:
            raise ValueError(f"rampup_length must be >= 0, got {rampup_length!r}.")
        if int(divisor) != divisor or divisor < 1:
            raise ValueError(f"divisor must be an integer >= 1, got {divisor!r}.")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        self.consistency, self.rampup_length, self.divisor, self.mode = consistency, rampup_length, int(divisor), mode

    def weight(self, iteration: int) -> float:
        """Consistency weight of the (1-based) ``iteration``."""
        if self.mode == "constant":
            return float(self.consistency)
        step = (int(iteration) - 1) // self.divisor
        ramp = sigmoid_rampup if self.mode == "sigmoid" else linear_rampup
        return float(self.consistency) * ramp(step, self.rampup_length)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._log)

    def __call__(self, engine: Engine) -> None:
        engine.state.consistency_weight = self.weight(engine.state.iteration)

    def _log(self, engine: Engine) -> None:
        logger.info("epoch %d (iteration %d): consistency weight = %.6g", engine.state.epoch,
                    engine.state.iteration, getattr(engine.state, "consistency_weight", float("nan")))
