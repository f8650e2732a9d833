"""Base of the hand_osteo pipeline stages: a folder, a settings fingerprint, and skip-if-done."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from monai_osteo.engines.hand_osteo.common import atomic_write_json

__all__ = ["PipelineStage"]

logger = logging.getLogger("monai_osteo.hand_osteo")


class PipelineStage:
    """A stage writes its outputs to ``output_dir`` and ``stage.json`` (its settings) last.

    ``run()`` skips the work when ``resume`` is set and ``stage.json`` holds the same settings (so the ablations
    and a re-run reuse finished stages); any change of settings, including an upstream stage's, re-runs it.

    Args:
        output_dir: folder of this stage's outputs.
        resume: reuse finished outputs with identical settings.
    """

    name = "stage"

    def __init__(self, output_dir: str | os.PathLike, resume: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.resume = resume

    def settings(self) -> dict:
        """JSON-able settings that determine the outputs (upstream stages' settings included)."""
        return {}

    @property
    def done_file(self) -> Path:
        return self.output_dir / "stage.json"

    def is_done(self) -> bool:
        if not self.done_file.is_file():
            return False
        try:
            have = json.loads(self.done_file.read_text())
        except json.JSONDecodeError:
            return False
        return have.get("settings") == json.loads(json.dumps(self.settings(), default=str))

    def run(self):
        if self.resume and self.is_done():
            logger.info("%s: outputs in %s are up to date, skipping (resume=False re-runs it)", self.name,
                        self.output_dir)
            return self.result()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.done_file.unlink(missing_ok=True)
        result = self._run()
        atomic_write_json(self.done_file, {"settings": json.loads(json.dumps(self.settings(), default=str))})
        return result

    def _run(self):
        """Compute and write the stage's outputs (subclasses implement it); return what ``run`` returns."""
        raise NotImplementedError(f"{type(self).__name__} must implement _run() (PipelineStage is a base class).")

    def result(self):
        """What ``run`` returns when skipped (e.g. the metrics it wrote)."""
        path = self.output_dir / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else None
