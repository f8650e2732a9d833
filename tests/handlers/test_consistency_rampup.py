"""Consistency ramp-up: values against the Laine & Aila / S4MI formula, per-iteration setting, resume, errors."""

from __future__ import annotations

import logging
import math

import pytest
from ignite.engine import Engine

from monai_osteo.handlers.consistency_rampup import ConsistencyRampupHandler, linear_rampup, sigmoid_rampup


def test_sigmoid_rampup_formula():
    assert sigmoid_rampup(0, 200) == pytest.approx(math.exp(-5.0))
    assert sigmoid_rampup(200, 200) == 1.0 and sigmoid_rampup(1e6, 200) == 1.0
    assert sigmoid_rampup(-3, 200) == pytest.approx(math.exp(-5.0))
    assert sigmoid_rampup(50, 200) == pytest.approx(math.exp(-5.0 * 0.75**2))
    assert sigmoid_rampup(7, 0) == 1.0
    assert linear_rampup(50, 200) == 0.25 and linear_rampup(300, 200) == 1.0 and linear_rampup(3, 0) == 1.0


def test_s4mi_schedule_values():
    """S4MI: w = 0.1 * sigmoid_rampup(iter_num // 150, 200) with iter_num = iteration - 1."""
    h = ConsistencyRampupHandler()
    assert h.weight(1) == pytest.approx(0.1 * math.exp(-5.0))
    assert h.weight(150) == h.weight(1) and h.weight(151) == pytest.approx(0.1 * math.exp(-5.0 * (1 - 1 / 200) ** 2))
    assert h.weight(10000) == pytest.approx(0.1 * math.exp(-5.0 * (1 - 66 / 200) ** 2))
    assert h.weight(10000) == pytest.approx(0.0106, abs=5e-5)
    assert h.weight(30001) == pytest.approx(0.1)
    assert ConsistencyRampupHandler(0.3, mode="constant").weight(1) == 0.3
    assert ConsistencyRampupHandler(0.2, rampup_length=4, divisor=1, mode="linear").weight(3) == pytest.approx(0.1)


def _run(handler: ConsistencyRampupHandler, engine: Engine | None = None, max_epochs: int = 3) -> list[float]:
    seen = []
    engine = engine or Engine(lambda e, b: seen.append(e.state.consistency_weight))
    handler.attach(engine)
    engine.run(range(4), max_epochs=max_epochs)
    return seen


def test_handler_sets_the_weight_every_iteration_and_logs(caplog):
    h = ConsistencyRampupHandler(consistency=0.5, rampup_length=3, divisor=2)
    with caplog.at_level(logging.INFO, logger="monai_osteo.handlers.consistency_rampup"):
        seen = _run(h)
    steps = [(i - 1) // 2 for i in range(1, 13)]
    assert seen == pytest.approx([0.5 * math.exp(-5.0 * (1 - min(s, 3) / 3) ** 2) for s in steps])
    assert seen[-1] == 0.5 and all(a <= b for a, b in zip(seen, seen[1:]))
    assert sum("consistency weight" in r.getMessage() for r in caplog.records) == 3


def test_handler_resumes_from_the_engine_iteration():
    h = ConsistencyRampupHandler(consistency=0.1, rampup_length=5, divisor=1)
    full = _run(h)
    seen = []
    engine = Engine(lambda e, b: seen.append(e.state.consistency_weight))
    engine.load_state_dict({"epoch": 1, "epoch_length": 4, "max_epochs": 3})
    _run(ConsistencyRampupHandler(consistency=0.1, rampup_length=5, divisor=1), engine)
    assert seen == full[4:]


@pytest.mark.parametrize("kwargs, match", [({"consistency": -1}, "consistency"), ({"rampup_length": -1}, "rampup"),
                                           ({"divisor": 0}, "divisor"), ({"divisor": 1.5}, "divisor"),
                                           ({"mode": "cosine"}, "mode")])
def test_handler_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConsistencyRampupHandler(**kwargs)
