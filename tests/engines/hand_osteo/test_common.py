"""Atomic writes leave no temporary files; datalist items and datalist resolution on small hand-written files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from monai_osteo.engines.hand_osteo.common import atomic_save, atomic_write_json, datalist_items, resolve_datalist


def test_atomic_write_json_no_temp_and_values(tmp_path):
    path = tmp_path / "sub" / "out.json"
    atomic_write_json(path, {"a": 1, "arr": np.arange(3), "p": tmp_path, "nan": float("nan")})
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]
    data = json.loads(path.read_text())
    assert data["a"] == 1 and data["arr"] == [0, 1, 2] and data["p"] == str(tmp_path) and math.isnan(data["nan"])
    assert path.read_text().endswith("\n")


def test_atomic_write_json_failure_keeps_previous(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_json(path, {"v": 1})
    before = path.read_text()
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        atomic_write_json(path, {"v": 2, "bad": object()})
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_save_failure_mid_write_cleans_temp(tmp_path):
    path = tmp_path / "model.pt"
    atomic_save({"w": 1}, path)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails inside the write
        atomic_save({"f": lambda: 0}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


@pytest.fixture
def datalist(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    content = {
        "training": [
            {"image": "img/a.png", "label": 1, "subject_id": "s1", "split": "training"},
            {"image": "img/b.png", "label": 0, "subject_id": "s2", "split": "validation"},
            {"image": "img/c.png", "label": 0, "subject_id": "s3"},  # split defaults to the key
            {"image": "img/d.png", "label": 1, "subject_id": "s4", "split": "test"},
        ],
        "unlabeled": [{"image": "u/x.png", "split": "unlabeled"}, {"image": "u/y.png", "split": "training"}],
        "test": [],
    }
    path = root / "datalist.json"
    path.write_text(json.dumps(content))
    return path


def test_datalist_items_all_absolute_with_set(datalist):
    items = datalist_items(datalist, ["training", "unlabeled", "test", "missing"])
    assert [i["subject_id"] for i in items[:4]] == ["s1", "s2", "s3", "s4"]
    assert [i["set"] for i in items] == ["training"] * 4 + ["unlabeled"] * 2
    root = datalist.parent
    assert [i["image"] for i in items] == [str(root / p) for p in ("img/a.png", "img/b.png", "img/c.png",
                                                                    "img/d.png", "u/x.png", "u/y.png")]
    assert items[0]["label"] == 1 and items[1]["label"] == 0  # integer labels untouched


def test_datalist_items_split_filter_and_limit(datalist):
    val = datalist_items(datalist, ["training"], splits=["validation"])
    assert [i["subject_id"] for i in val] == ["s2"] and val[0]["set"] == "training"
    train = datalist_items(datalist, ["training", "unlabeled"], splits=("training",))
    assert [(i["set"], i["image"].rsplit("/", 1)[-1]) for i in train] == [
        ("training", "a.png"), ("training", "c.png"), ("unlabeled", "y.png")]
    per_key = datalist_items(datalist, ["training", "unlabeled"], splits=["test", "unlabeled", "validation"], limit=1)
    assert [(i["set"], i["image"].rsplit("/", 1)[-1]) for i in per_key] == [("training", "b.png"),
                                                                            ("unlabeled", "x.png")]
    assert [i["subject_id"] for i in datalist_items(datalist, ["training"], limit=2)] == ["s1", "s2"]


def test_resolve_datalist_user_file(tmp_path, datalist):
    assert resolve_datalist(datalist.parent, phantom_preset=None) == datalist
    other = datalist.parent / "mine.json"
    other.write_text(datalist.read_text())
    assert resolve_datalist(datalist.parent, "mine.json", phantom_preset=None) == other
    assert resolve_datalist(tmp_path / "elsewhere", str(other), phantom_preset=None) == other


def test_resolve_datalist_missing_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no datalist found"):
        resolve_datalist(tmp_path / "empty", phantom_preset=None)
    with pytest.raises(FileNotFoundError, match="datalist"):
        resolve_datalist(tmp_path, "nope.json", phantom_preset=None)
