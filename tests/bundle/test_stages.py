"""run_stages: a stage re-runs only when its resolved config, its data content or an upstream stage changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_osteo.bundle import config_fingerprint, run_stages
from monai_osteo.bundle.stages import STAGE_FILE

# a stage appends its value to count.txt: the file's length tells how often it ran
STAGE = {
    "imports": ["$import pathlib"],
    "value": 1,
    "unrelated": "x",
    "run": ["$pathlib.Path(@output_dir).mkdir(parents=True, exist_ok=True)",
            "$open(pathlib.Path(@output_dir) / 'count.txt', 'a').write(str(@value))"],
}


@pytest.fixture
def setup(tmp_path):
    config = tmp_path / "stage.json"
    config.write_text(json.dumps(STAGE))
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("image a")
    datalist = data / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"image": "a.txt"}]}))
    return config, datalist, tmp_path


def _stage(config, out, **over):
    return {"name": out.name, "config_file": str(config), "output_dir": str(out), "overrides": {"output_dir": str(out),
                                                                                                  **over}}


def _count(out: Path) -> str:
    return (out / "count.txt").read_text() if (out / "count.txt").is_file() else ""


def test_second_run_is_skipped_and_changed_setting_reruns(setup):
    config, datalist, root = setup
    out = root / "s1"
    recs = run_stages([_stage(config, out)], datalist=str(datalist))
    assert _count(out) == "1" and not recs[0]["skipped"]
    assert json.loads((out / STAGE_FILE).read_text())["status"] == "done"
    assert run_stages([_stage(config, out)], datalist=str(datalist))[0]["skipped"]
    run_stages([_stage(config, out, unrelated="y")], datalist=str(datalist))  # not reachable from run
    assert _count(out) == "1"
    run_stages([_stage(config, out, value=2)], datalist=str(datalist))
    assert _count(out) == "12"
    run_stages([_stage(config, out, value=2)], datalist=str(datalist), resume=False)
    assert _count(out) == "122"


def test_data_content_not_path_decides(setup):
    config, datalist, root = setup
    out = root / "s1"
    run_stages([_stage(config, out)], datalist=str(datalist))
    moved = root / "moved"
    (datalist.parent).rename(moved)
    run_stages([_stage(config, out, datalist=str(moved / "datalist.json"))], datalist=str(moved / "datalist.json"))
    assert _count(out) == "1"  # same content elsewhere: skipped
    (moved / "a.txt").write_text("image a, edited")
    run_stages([_stage(config, out)], datalist=str(moved / "datalist.json"))
    assert _count(out) == "11"  # a listed file changed: re-run


def test_upstream_change_reruns_downstream_and_disabled_stage_is_skipped(setup):
    config, datalist, root = setup
    a, b = root / "a", root / "b"
    run_stages([_stage(config, a), _stage(config, b)], datalist=str(datalist))
    assert (_count(a), _count(b)) == ("1", "1")
    run_stages([_stage(config, a, value=3), _stage(config, b)], datalist=str(datalist))
    assert (_count(a), _count(b)) == ("13", "11")
    recs = run_stages([{**_stage(config, a, value=3), "enabled": False}, _stage(config, b)], datalist=str(datalist))
    assert recs[0]["skipped"] and recs[0]["fingerprint"] is None and _count(a) == "13"


def test_unfinished_run_resumes_changed_run_starts_afresh(setup):
    config, datalist, root = setup
    out = root / "s1"
    run_stages([_stage(config, out)], datalist=str(datalist))
    state = json.loads((out / STAGE_FILE).read_text())
    # a killed run: same fingerprint, status running, its resume checkpoint on disk
    (out / STAGE_FILE).write_text(json.dumps({**state, "status": "running"}))
    (out / "last.pt").write_bytes(b"checkpoint")
    run_stages([_stage(config, out)], datalist=str(datalist))
    assert _count(out) == "11" and (out / "last.pt").is_file()  # ran again, kept the checkpoint to resume from
    (out / STAGE_FILE).write_text(json.dumps({**state, "status": "running"}))
    run_stages([_stage(config, out, value=5)], datalist=str(datalist))
    assert not (out / "last.pt").exists() and _count(out) == "115"  # other settings: the stale checkpoint is gone


def test_config_fingerprint_follows_references_not_paths(tmp_path):
    from monai.bundle import ConfigParser

    def fp(**over):
        p = ConfigParser({**STAGE, "output_dir": "/a", "chain": "@value", **over})
        p["run"] = [*STAGE["run"], "$@chain"]
        return config_fingerprint(p)

    assert fp() == fp(output_dir="/elsewhere") == fp(unrelated="z")
    assert fp() != fp(value=7)


def test_failing_stage_leaves_it_unfinished(setup):
    config, datalist, root = setup
    bad = root / "bad.json"
    bad.write_text(json.dumps({"run": ["$1 / 0"]}))
    out = root / "s1"
    with pytest.raises(RuntimeError):
        run_stages([_stage(bad, out)], datalist=str(datalist))
    assert json.loads((out / STAGE_FILE).read_text())["status"] == "running"


def test_execution_settings_do_not_rerun_a_stage(setup):
    """The device, loader workers and cache workers say how a stage runs, not what it computes (each DDP rank has its
    own device: the ranks must agree on the fingerprint)."""
    config, datalist, tmp = setup
    config.write_text(json.dumps({**STAGE, "device": "cpu", "num_workers": 2, "cache_workers": 1,
                                  "run": STAGE["run"] + ["$print(@device, @num_workers, @cache_workers)"]}))
    out = tmp / "exec"
    run_stages([_stage(config, out)], datalist=str(datalist))
    records = run_stages([_stage(config, out, device="cuda:1", num_workers=8, cache_workers=4)], datalist=str(datalist))
    assert records[0]["skipped"] and _count(out) == "1"


def test_data_changed_under_a_run_stops_it(setup, tmp_path):
    """Another run regenerating the same phantom folder mid-run (its stages would mix two cohorts) stops the run with
    a message naming the datalist and the cause, before the next stage and after the stage it happened in."""
    config, datalist, _ = setup
    rewrite = {**STAGE, "run": [*STAGE["run"], f"$open({str(datalist.parent / 'a.txt')!r}, 'w').write('image b')"]}
    (tmp_path / "rewrite.json").write_text(json.dumps(rewrite))
    stages = [_stage(config, tmp_path / "first"), _stage(tmp_path / "rewrite.json", tmp_path / "second"),
              _stage(config, tmp_path / "third")]
    with pytest.raises(RuntimeError, match=r"datalist.json: the datalist or a file it lists changed while stage "
                                           r"second ran.*another seed"):
        run_stages(stages, datalist=str(datalist))
    assert _count(tmp_path / "first") == "1" and not (tmp_path / "third").exists()
    assert json.loads((tmp_path / "second" / STAGE_FILE).read_text())["status"] == "running"  # not recorded as done


def test_data_rewritten_identically_or_removed_under_a_run(setup, tmp_path):
    """A byte-identical rewrite (a seeded cohort regenerated as it was) lets the run go on; a listed file that
    vanishes stops it."""
    config, datalist, _ = setup
    a = str(datalist.parent / "a.txt")
    same = {**STAGE, "run": [*STAGE["run"], f"$open({a!r}, 'w').write('image a')"]}
    gone = {**STAGE, "run": [*STAGE["run"], f"$__import__('os').remove({a!r})"]}
    (tmp_path / "same.json").write_text(json.dumps(same))
    (tmp_path / "gone.json").write_text(json.dumps(gone))
    recs = run_stages([_stage(tmp_path / "same.json", tmp_path / "s1"), _stage(config, tmp_path / "s2")],
                      datalist=str(datalist))
    assert [r["skipped"] for r in recs] == [False, False]
    with pytest.raises(RuntimeError, match="changed while stage g1 ran"):
        run_stages([_stage(tmp_path / "gone.json", tmp_path / "g1")], datalist=str(datalist))
