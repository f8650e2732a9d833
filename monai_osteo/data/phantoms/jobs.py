"""Run a phantom generator's per-item jobs, in a process pool or in this process, reporting the failures."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from monai_osteo.io import atomic_write_json

__all__ = ["run_jobs", "write_cohort"]

logger = logging.getLogger("monai_osteo.data.phantoms")


def run_jobs(fn: Callable, jobs: Sequence, workers: int | None, progress: bool, desc: str, unit: str,
             chunksize: int = 1) -> tuple[list, list[str]]:
    """Call ``fn`` on every job, in order, with ``workers`` processes (default: all cores; 1 = this process).

    ``fn`` returns a tuple whose last item is an error message (``None`` on success): a batch job reports the
    failing item and finishes the rest. Every item has its own random stream, so the results do not depend on
    ``workers``.

    Returns:
        the successful results (the tuple without its error; its single item when it has one) in job order, and the
        error messages.
    """
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results, failures = [], []
    with tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress) as bar:
        executor = ProcessPoolExecutor(workers) if workers > 1 else None
        try:
            for *value, err in executor.map(fn, jobs, chunksize=chunksize) if executor else map(fn, jobs):
                bar.update(1)
                if err:
                    logger.error("phantom generation failed for %s", err)
                    failures.append(err)
                else:
                    results.append(value[0] if len(value) == 1 else tuple(value))
        finally:
            if executor:
                executor.shutdown()
    return results, failures


def write_cohort(out: Path, datalist: Mapping, params: Mapping, failures: Sequence[str], n_jobs: int,
                 item: str = "phantoms") -> Path:
    """Write ``datalist.json`` and ``cohort.json`` (the generator's parameters and failures) atomically.

    Raises:
        RuntimeError: when some jobs failed (the others are written, and ``cohort.json`` lists the failures, so a
            cached cohort with failures is regenerated).

    Returns:
        the path of ``datalist.json``.
    """
    atomic_write_json(out / "datalist.json", datalist, indent=1, sort_keys=True)
    atomic_write_json(out / "cohort.json", {**params, "failures": list(failures)}, indent=1, sort_keys=True)
    if failures:
        raise RuntimeError(f"{len(failures)} of {n_jobs} {item} failed (first: {failures[0]}); "
                           f"the others were written to {out}.")
    return out / "datalist.json"
