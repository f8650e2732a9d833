"""PipelineStage: skip-if-done on identical settings, re-run on change or resume=False, stage.json written last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_osteo.engines.hand_osteo.stage import PipelineStage


class _Counting(PipelineStage):
    name = "counting"

    def __init__(self, output_dir, resume=True, lr=0.1, fail=False):
        super().__init__(output_dir, resume)
        self.lr, self.fail, self.calls = lr, fail, 0

    def settings(self):
        return {"lr": self.lr, "upstream": Path("/x/y"), "sizes": (4, 8)}  # Path / tuple: JSON round trip

    def _run(self):
        self.calls += 1
        if self.done_file.exists():
            raise AssertionError("stage.json must not exist while the stage runs")
        if self.fail:
            raise RuntimeError("boom")
        metrics = {"score": self.calls}
        (self.output_dir / "metrics.json").write_text(json.dumps(metrics))
        return metrics


def test_resume_skips_identical_settings(tmp_path):
    stage = _Counting(tmp_path / "s")
    assert stage.run() == {"score": 1}
    assert stage.calls == 1
    assert json.loads(stage.done_file.read_text()) == {"settings": {"lr": 0.1, "upstream": "/x/y", "sizes": [4, 8]}}
    again = _Counting(tmp_path / "s")
    assert again.is_done()
    assert again.run() == {"score": 1}  # result() reads metrics.json
    assert again.calls == 0


def test_changed_settings_rerun(tmp_path):
    _Counting(tmp_path / "s").run()
    changed = _Counting(tmp_path / "s", lr=0.2)
    assert not changed.is_done()
    changed.run()
    assert changed.calls == 1
    assert json.loads(changed.done_file.read_text())["settings"]["lr"] == 0.2
    assert not _Counting(tmp_path / "s", lr=0.1).is_done()


def test_resume_false_always_reruns(tmp_path):
    stage = _Counting(tmp_path / "s", resume=False)
    stage.run()
    stage.run()
    assert stage.calls == 2


def test_failed_run_leaves_no_stage_json(tmp_path):
    stage = _Counting(tmp_path / "s", fail=True)
    with pytest.raises(RuntimeError, match="boom"):
        stage.run()
    assert not stage.done_file.exists()
    # a finished stage whose re-run (new settings) fails is no longer marked done
    _Counting(tmp_path / "t").run()
    failing = _Counting(tmp_path / "t", lr=0.5, fail=True)
    with pytest.raises(RuntimeError):
        failing.run()
    assert not failing.done_file.exists()
    assert not _Counting(tmp_path / "t").is_done()


def test_corrupt_stage_json_reruns(tmp_path):
    stage = _Counting(tmp_path / "s")
    stage.output_dir.mkdir()
    stage.done_file.write_text("{not json")
    assert not stage.is_done()
    stage.run()
    assert stage.calls == 1 and stage.is_done()


def test_skipped_without_metrics_returns_none(tmp_path):
    class _NoMetrics(PipelineStage):
        def _run(self):
            return "fresh"

    assert _NoMetrics(tmp_path / "n").run() == "fresh"
    assert _NoMetrics(tmp_path / "n").run() is None


def test_base_run_is_abstract(tmp_path):
    with pytest.raises(NotImplementedError):
        PipelineStage(tmp_path / "b").run()
    assert not (tmp_path / "b" / "stage.json").exists()
