"""EMA update of a BYOL/DINO teacher after every iteration, with a cosine momentum schedule towards 1.

- [0] Grill et al., 2020, BYOL: Bootstrap Your Own Latent (tau from 0.996 to 1, cosine, per step).
- [1] Chen & He, 2021, SimSiam: Exploring Simple Siamese Representation Learning (no teacher: a no-op).
- [2] Caron et al., 2021, DINO: Emerging Properties in Self-Supervised Vision Transformers (0.996 to 1, cosine;
  teacher temperature warm-up per epoch; last layer frozen during the first epoch).
- [3] Singh & Cirrone, MedSASS §3.2 (SSL baselines on ResNet-50).
"""

from __future__ import annotations

import logging

import torch
from ignite.engine import Engine, Events
from lightly.utils.scheduler import cosine_schedule
from monai.engines.utils import IterationEvents

__all__ = ["TeacherMomentumHandler"]

logger = logging.getLogger(__name__)


class TeacherMomentumHandler:
    """Call ``network.momentum_update(m)`` after every iteration, ``m`` from ``momentum_start`` to ``momentum_end``
    on lightly's ``cosine_schedule`` over ``total_iterations`` (the step is ``iteration - 1``; ``momentum_end``
    from the last scheduled step on).

    It also does the per-epoch bookkeeping of DINO that the trainer cannot: on ``EPOCH_STARTED`` it sets
    ``loss.epoch = epoch - 1`` (0-based; the teacher temperature warm-up of
    :class:`~monai_osteo.losses.PairSSLLoss`) when the loss has an ``epoch`` attribute, and on MONAI's
    ``IterationEvents.BACKWARD_COMPLETED`` (between backward and the optimiser step, when the engine has that event,
    as ``SupervisedTrainer`` subclasses do) it calls ``network.cancel_last_layer_gradients(epoch - 1)`` when the
    network has that method. With a SimSiam :class:`~monai_osteo.networks.nets.EncoderSSLNetwork` every call is a
    no-op, so one handler list serves the three methods.

    Args:
        momentum_start: momentum at the first iteration (BYOL [0]: 0.99 for 300 epochs, 0.996 for 1000;
            DINO [2]: 0.996).
        momentum_end: momentum at the end (1: the teacher freezes).
        total_iterations: length of the schedule in iterations (None: ``max_epochs * epoch_length`` of the engine).
        network: object with ``momentum_update(m)`` (None: ``engine.network``, unwrapped from
            ``DistributedDataParallel``/``DataParallel``).
        loss: the loss whose ``epoch`` is set (None: ``engine.loss_function``).

    The current momentum is also stored as ``engine.state.teacher_momentum``.
    """

    def __init__(
        self,
        momentum_start: float = 0.99,
        momentum_end: float = 1.0,
        total_iterations: int | None = None,
        network=None,
        loss=None,
    ) -> None:
        for name, value in (("momentum_start", momentum_start), ("momentum_end", momentum_end)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
        if total_iterations is not None and (isinstance(total_iterations, bool) or total_iterations < 1):
            raise ValueError(f"total_iterations must be None or an int >= 1, got {total_iterations!r}.")
        self.momentum_start, self.momentum_end = momentum_start, momentum_end
        self.total_iterations, self.network, self.loss = total_iterations, network, loss

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.EPOCH_STARTED, self._set_epoch)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._log)
        try:
            engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self._cancel_last_layer)
        except ValueError:  # a plain ignite Engine without MONAI's iteration events
            pass

    def _network(self, engine: Engine):
        net = self.network if self.network is not None else getattr(engine, "network", None)
        if isinstance(net, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            net = net.module
        return net

    def momentum(self, engine: Engine) -> float:
        """Momentum of the iteration that has just completed."""
        total = self.total_iterations or engine.state.max_epochs * engine.state.epoch_length
        step = min(engine.state.iteration - 1, total)
        return cosine_schedule(step, total, self.momentum_start, self.momentum_end)

    def __call__(self, engine: Engine) -> None:
        net = self._network(engine)
        if not callable(getattr(net, "momentum_update", None)):
            raise ValueError(
                f"the network must have a momentum_update(m) method (e.g. EncoderSSLNetwork), got "
                f"{type(net)!r}; pass TeacherMomentumHandler(network=...) if it is not engine.network."
            )
        engine.state.teacher_momentum = m = self.momentum(engine)
        net.momentum_update(m)

    def _set_epoch(self, engine: Engine) -> None:
        loss = self.loss if self.loss is not None else getattr(engine, "loss_function", None)
        if hasattr(loss, "epoch"):
            loss.epoch = engine.state.epoch - 1

    def _cancel_last_layer(self, engine: Engine) -> None:
        cancel = getattr(self._network(engine), "cancel_last_layer_gradients", None)
        if callable(cancel):
            cancel(engine.state.epoch - 1)

    def _log(self, engine: Engine) -> None:
        logger.info(
            "epoch %d: teacher momentum = %.6f",
            engine.state.epoch,
            getattr(engine.state, "teacher_momentum", float("nan")),
        )
