"""Chain stage configs: each stage is a standard MONAI workflow, re-run only when its config or data changed.

A bundle's ``train.json`` runs its stages in order with :func:`run_stages`; every stage is an ordinary config
(``train#trainer``, ``validate#evaluator``, handlers, ...) that also runs alone with ``python -m monai.bundle run``.
A stage folder holds ``stage.json``: the stage's fingerprint and whether it finished. A finished stage whose
fingerprint is unchanged is skipped; an unfinished one with the same fingerprint is run again and resumes from
its last checkpoint (the stage config's ``CheckpointLoader``); a changed fingerprint starts the stage afresh.

The fingerprint is the hash of (a) the raw config of every id the stage's ``initialize``/``run``/``finalize``
reach through references (network, loss, optimiser, transforms, epochs, ...; not the values of path-like ids),
(b) the content of the datalist and of every file it lists, (c) the previous stage's fingerprint and (d) the
version of ``monai_osteo`` (edits of the code between releases are not detected: use ``--resume false``). MONAI's
bundle tools have no notion of a pipeline of configs (the model zoo runs several configs by hand, e.g.
brats_mri_generative_diffusion), hence this helper.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from monai.bundle import ConfigParser, ConfigWorkflow
from monai.bundle.reference_resolver import ReferenceResolver

from monai_osteo import __version__
from monai_osteo.bundle.datalist import datalist_files
from monai_osteo.io import atomic_write_json

__all__ = ["STAGE_FILE", "config_fingerprint", "data_fingerprint", "run_stages"]

logger = logging.getLogger("monai_osteo.bundle")
STAGE_FILE = "stage.json"
#: ids whose values are locations, not settings: moving the data or the outputs does not re-run a stage
PATH_IDS = ("bundle_root", "dataset_dir", "datalist_file", "datalist", "phantom_dir", "output_dir", "models_dir",
            "config_dir", "meta_file")
#: ids that say how a stage runs, not what it computes: the device (each DDP rank has its own), loader and cache
#: workers, progress. Changing them (or moving from CPU to GPU) does not re-run a finished stage.
EXECUTION_IDS = ("device", "num_workers", "cache_workers", "progress")


def config_fingerprint(parser: ConfigParser, roots: Iterable[str] = ("initialize", "run", "finalize"),
                       path_ids: Iterable[str] = PATH_IDS + EXECUTION_IDS) -> str:
    """Hash of the raw config of every id reachable from ``roots`` (the parsed ``parser``'s items).

    Ids in ``path_ids`` (locations and execution settings: :data:`PATH_IDS`, :data:`EXECUTION_IDS`) and ids ending in
    ``_dir``/``_file`` are left out.
    """
    if not parser.ref_resolver.items:
        parser.parse(True)
    items = parser.ref_resolver.items
    skip = set(path_ids)
    todo = [r for r in roots if r in items]
    seen: set[str] = set()
    while todo:
        i = todo.pop()
        if i in seen or i in skip or i.endswith(("_dir", "_file")):
            continue
        seen.add(i)
        todo.extend(ReferenceResolver.find_refs_in_config(items[i].get_config(), i))
    content = {i: items[i].get_config() for i in sorted(seen) if i in items}
    content["__monai_osteo_version__"] = __version__  # a new release of the code re-runs the stages
    return _sha(json.dumps(content, sort_keys=True, default=repr))


def data_fingerprint(files: Sequence[str | os.PathLike]) -> str:
    """Hash of the content of ``files`` (a datalist and everything it lists: :func:`datalist_files`), not their paths.

    The order of ``files`` matters, their names do not.
    """
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _stat_signature(files: Sequence[str | os.PathLike]) -> list[tuple[str, int, int]]:
    out = []
    for f in files:
        st = os.stat(f)
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_stage(folder: Path) -> dict:
    try:
        return json.loads((folder / STAGE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def run_stages(stages: Sequence[Mapping], settings: Mapping | None = None, datalist: str | None = None,
               meta_file: str | None = None, resume: bool = True) -> list[dict]:
    """Run stage configs in order; skip a stage whose fingerprint matches a finished run of it.

    Args:
        stages: one mapping per stage: ``name``; ``config_file`` (a path or list of paths, layered like
            ``--config_file``); ``output_dir`` (the stage folder: ``stage.json`` lives there); optional
            ``overrides`` (ids -> values, like ``--id value`` on the command line), ``workflow_type``
            ("train"/"infer" check MONAI's standard properties; default none), ``enabled`` (default True),
            ``inherit`` (receive ``settings``; default True), ``meta_file`` (default: ``meta_file``),
            ``resume_file`` (the checkpoint a resumed run loads, removed when the stage starts afresh; default
            ``"last.pt"`` in ``output_dir``).
        settings: overrides given to every stage (the shared settings of the parent config: seed, sizes, ...).
        datalist: the datalist whose content (and that of every file it lists) is part of each fingerprint.
        meta_file: ``metadata.json`` of the bundle.
        resume: False re-runs every stage from scratch.

    Under ``torch.distributed`` (``torchrun`` with a bundle's ``multi_gpu_train.json``) every rank runs every stage:
    a stage config that shards its data (a ``DistributedSampler``) splits the work, the others run identically
    on each rank (MONAI's metric handlers gather across ranks, so a rank-0-only stage would deadlock; identical
    outputs are written atomically, so concurrent writes of the same file are safe). Rank 0 alone writes
    ``stage.json`` and takes every skip decision for all ranks (its fingerprint and stage record are broadcast).

    Returns:
        one record per stage: ``name``, ``fingerprint``, ``skipped``, ``seconds``.
    """
    data_files = datalist_files(datalist) if datalist else []
    data_fp = data_fingerprint(data_files) if datalist else ""
    upstream, records = data_fp, []
    data_stat = _stat_signature(data_files)

    def check_data(when: str) -> None:
        """The data of a run must not change under it (e.g. another run regenerating a phantom cohort in the same
        folder): its stages would mix two cohorts while the fingerprints record one. While every file keeps its size
        and modification time nothing is read; otherwise the data are hashed again (identical content passes)."""
        nonlocal data_stat
        if not datalist:
            return
        try:
            files = datalist_files(datalist)
            stat = _stat_signature(files)
            changed = stat != data_stat and data_fingerprint(files) != data_fp
        except OSError:  # a listed file (or the datalist) vanished
            changed = True
        if not changed:
            data_stat = stat
            return
        raise RuntimeError(f"{datalist}: the datalist or a file it lists changed {when}; the stages of this run "
                           "would mix two versions of the data. Another run writing the same phantom folder (for "
                           "another seed) is the usual cause: run those one after another, or give each its own "
                           "phantom_dir / datalist, then run this one again.")

    dist = _Dist()
    for stage in stages:
        name = stage["name"]
        if not stage.get("enabled", True):
            logger.info("stage %s: disabled", name)
            records.append({"name": name, "fingerprint": None, "skipped": True, "seconds": 0.0})
            continue
        files = [stage["config_file"]] if isinstance(stage["config_file"], (str, os.PathLike)) else \
            list(stage["config_file"])
        over = {**(dict(settings or {}) if stage.get("inherit", True) else {}), **dict(stage.get("overrides") or {})}
        wf = ConfigWorkflow(config_file=[str(f) for f in files], meta_file=stage.get("meta_file", meta_file),
                            logging_file=False,
                            workflow_type=stage.get("workflow_type"), **over)
        wf.initialize()
        fp = _sha(upstream + config_fingerprint(wf.parser))
        folder = Path(stage["output_dir"])
        dist.barrier()  # every rank sees the stage files as rank 0 left them, and reads them before rank 0 writes
        have = _read_stage(folder)
        # rank 0 decides for all: ranks may differ in what they hash (a rank's own device) or see
        fp, have = dist.broadcast((fp, have))
        dist.barrier()
        if resume and have.get("fingerprint") == fp and have.get("status") == "done":
            logger.info("stage %s: up to date in %s (fingerprint %s), skipped", name, folder, fp)
            wf.finalize()
            records.append({"name": name, "fingerprint": fp, "skipped": True, "seconds": 0.0})
            upstream = fp
            continue
        resume_file = folder / stage.get("resume_file", "last.pt")
        if dist.main:
            if (not resume or have.get("fingerprint") != fp) and resume_file.is_file():
                logger.info("stage %s: settings or data changed, starting afresh (removing %s)", name, resume_file)
                resume_file.unlink()
            elif have.get("fingerprint") == fp:
                logger.info("stage %s: resuming an unfinished run (fingerprint %s)", name, fp)
            atomic_write_json(folder / STAGE_FILE, {"fingerprint": fp, "status": "running", "config_file": files})
        dist.barrier()
        start = time.perf_counter()
        missing = wf.check_properties() if stage.get("workflow_type") else None
        if missing:
            raise ValueError(f"stage {name}: the config misses the required ids {missing} of a MONAI "
                             f"{stage['workflow_type']} workflow ({files}).")
        check_data(f"before stage {name}")
        logger.info("stage %s: running %s", name, [Path(f).name for f in files])
        wf.run()
        wf.finalize()
        check_data(f"while stage {name} ran")
        seconds = round(time.perf_counter() - start, 1)
        dist.barrier()
        if dist.main:
            atomic_write_json(folder / STAGE_FILE, {"fingerprint": fp, "status": "done", "config_file": files,
                                                    "seconds": seconds})
        records.append({"name": name, "fingerprint": fp, "skipped": False, "seconds": seconds})
        upstream = fp
    return records


class _Dist:
    """Rank and barrier of the ``torch.distributed`` process group, or of a single process."""

    def __init__(self) -> None:
        import torch.distributed as td

        self.td = td if td.is_available() and td.is_initialized() else None
        self.main = self.td is None or self.td.get_rank() == 0

    def barrier(self) -> None:
        if self.td is not None:
            self.td.barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (itself in a single process)."""
        if self.td is None:
            return obj
        box = [obj]
        self.td.broadcast_object_list(box, src=0)
        return box[0]
