from __future__ import annotations

import pytest
from ignite.engine import Engine

from monai_osteo.handlers import GammaAnnealingHandler, gamma_schedule


class _Loss:
    gamma = 1.0


def test_schedule_endpoints():
    for kind in ("linear", "cosine"):
        assert gamma_schedule(0.0, 0.25, kind) == 0.25 and gamma_schedule(1.0, 0.25, kind) == 1.0
        assert gamma_schedule(5.0, 0.25, kind) == 1.0
    assert abs(gamma_schedule(0.5, 0.2, "linear") - 0.6) < 1e-12
    assert gamma_schedule(0.99, 0.2, "step") == 0.2
    with pytest.raises(ValueError, match="schedule"):
        gamma_schedule(0.5, 0.2, "exp")


def test_handler_anneals_the_loss_during_training():
    loss = _Loss()
    seen = []
    engine = Engine(lambda e, b: seen.append(loss.gamma))
    engine.loss_function = loss
    GammaAnnealingHandler(gamma0=0.5, anneal_epochs=2).attach(engine)
    engine.run(range(4), max_epochs=3)
    assert seen[0] == 0.5 and seen[4] == 0.75 and seen[8:] == [1.0] * 4
    assert all(a <= b for a, b in zip(seen, seen[1:]))
    assert engine.state.gamma == 1.0


def test_handler_errors():
    with pytest.raises(ValueError, match="gamma0"):
        GammaAnnealingHandler(gamma0=0.0)
    engine = Engine(lambda e, b: None)
    engine.loss_function = object()
    GammaAnnealingHandler().attach(engine)
    with pytest.raises(ValueError, match="'gamma' attribute"):
        engine.run(range(1), max_epochs=1)
