"""Timing helper shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import time

import numpy as np


def median_round_times(contenders: dict, rounds: int, warmup: int) -> dict[str, float]:
    """Median wall time (s) per contender, one call of each per round, rounds interleaved so that load from other
    processes hits every contender alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(warmup + rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}
