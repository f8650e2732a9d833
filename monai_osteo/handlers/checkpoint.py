"""MONAI's ``CheckpointSaver`` writing atomically, plus the lookup of the checkpoint to resume from."""

from __future__ import annotations

import os
from pathlib import Path

from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

from monai_osteo.io import _umask

__all__ = ["AtomicCheckpointSaver", "last_checkpoint"]


class _AtomicDiskSaver(DiskSaver):
    """ignite's ``DiskSaver(atomic=True)`` with an optional fixed file name, readable by group and others."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint, filename: str, metadata=None) -> None:
        filename = self.filename or filename
        super().__call__(checkpoint, filename, metadata)
        path = os.path.join(self.dirname, filename)
        if os.path.isfile(path):  # ignite's temporary file is created 0600; give it the usual umask permissions
            os.chmod(path, 0o666 & ~_umask())

    def remove(self, filename: str) -> None:
        # a fixed name is replaced atomically by the next save: removing it first (ignite removes the old best
        # before writing the new one) would lose the best model if that write failed
        if self.filename is None:
            super().remove(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """``monai.handlers.CheckpointSaver`` whose files are written to a temporary name and renamed.

    MONAI's saver uses ``DiskSaver(atomic=False)`` (a killed run can leave a truncated checkpoint that the next
    ``CheckpointLoader`` fails on); this one uses ignite's atomic saver and keeps the usual file permissions.

    Put it in the ``save_dict``/``load_dict`` of the interval checkpoint (``state_dict``/``load_state_dict``) and a
    resumed run keeps its best key metric instead of overwriting the best model at its first validation.

    Args:
        interval_filename: fixed file name of the interval checkpoint (e.g. ``"last.pt"``, overwritten every
            ``save_interval`` epochs, the one to resume from); ``None`` keeps MONAI's numbered names.
        *args, **kwargs: as ``monai.handlers.CheckpointSaver``.
    """

    def __init__(self, *args, interval_filename: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if interval_filename is not None and self._interval_checkpoint is not None:
            self._interval_checkpoint.n_saved = None  # a fixed name is overwritten, never removed
        for ckpt in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if ckpt is not None:
                fixed = interval_filename if ckpt is self._interval_checkpoint else None
                fixed = fixed or getattr(ckpt.save_handler, "filename", None)
                ckpt.save_handler = _AtomicDiskSaver(self.save_dir, fixed)

    def state_dict(self) -> dict:
        """The best-so-far record of the key-metric checkpoint (saved in ``last.pt`` so a resumed run keeps it)."""
        return self._key_metric_checkpoint.state_dict() if self._key_metric_checkpoint is not None else {}


def last_checkpoint(folder: str | os.PathLike | None, filename: str = "last.pt") -> str | None:
    """Path of ``folder/filename`` if it exists (the interval checkpoint of an interrupted run), else ``None``."""
    if folder is None:
        return None
    path = Path(folder) / filename
    return str(path) if path.is_file() else None
