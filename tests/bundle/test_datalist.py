"""Datalist items and resolution: the user's datalist is never silently replaced; the phantom only when asked."""

from __future__ import annotations

import json
import re

import pytest

from monai_osteo.bundle.datalist import datalist_files, datalist_items, resolve_datalist, segmentation_items


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


class _FakeGenerator:
    """Stands in for ``ensure_hand_cohort``: records its arguments, writes nothing."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __call__(self, out_dir, preset="quick", seed=0, **overrides):
        self.calls.append((out_dir, preset, seed, overrides))
        return out_dir / "datalist.json"


@pytest.fixture
def fake_generator(monkeypatch):
    fake = _FakeGenerator()
    monkeypatch.setattr("monai_osteo.data.phantoms.ensure_hand_cohort", fake)
    return fake


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ----------------------------------------------------------------------------------------------------- items


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


# ------------------------------------------------------------------------------------------------ resolution


def test_resolve_datalist_user_file(tmp_path, datalist, fake_generator):
    assert resolve_datalist(datalist.parent, phantom_dir=tmp_path / "ph") == str(datalist)
    other = datalist.parent / "mine.json"
    other.write_text(datalist.read_text())
    assert resolve_datalist(datalist.parent, "mine.json", phantom_preset=None) == str(other)
    assert resolve_datalist(tmp_path / "elsewhere", str(other), phantom_preset=None) == str(other)  # absolute wins
    assert resolve_datalist(None, other) == str(other)  # a datalist_file alone is the user's data too
    assert fake_generator.calls == []
    assert not (tmp_path / "ph").exists()


def test_resolve_datalist_relative_name_is_looked_up_in_dataset_dir(tmp_path, datalist, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the name does not exist relative to the working directory
    (datalist.parent / "sub").mkdir()
    target = datalist.parent / "sub" / "list.json"
    target.write_text(datalist.read_text())
    assert resolve_datalist(datalist.parent, "sub/list.json") == str(target)


def test_resolve_datalist_relative_name_prefers_dataset_dir_over_cwd(tmp_path, datalist, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "mine.json").write_text("{}")  # a stray file of the same name where the command is run
    (datalist.parent / "mine.json").write_text(datalist.read_text())
    monkeypatch.chdir(cwd)
    assert resolve_datalist(datalist.parent, "mine.json") == str(datalist.parent / "mine.json")


def test_resolve_datalist_no_data_generates_phantom_into_phantom_dir(tmp_path, fake_generator):
    out = resolve_datalist(phantom_dir=tmp_path / "ph", phantom_preset="tiny", seed=7,
                           phantom_overrides={"subjects": 12, "unlabeled": 3})
    assert out == str(tmp_path / "ph" / "datalist.json") and isinstance(out, str)
    assert fake_generator.calls == [(tmp_path / "ph", "tiny", 7, {"subjects": 12, "unlabeled": 3})]
    resolve_datalist(phantom_dir=str(tmp_path / "ph2"))  # defaults: the quick preset, seed 0, no overrides
    assert fake_generator.calls[-1] == (tmp_path / "ph2", "quick", 0, {})


def test_resolve_datalist_missing_datalist_json_names_it_and_never_generates(tmp_path, fake_generator):
    user = tmp_path / "user_data"
    user.mkdir()
    (user / "a.png").write_bytes(b"png")
    before = _tree(user)
    with pytest.raises(FileNotFoundError, match=re.escape(str(user / "datalist.json")) + ".*no datalist.json"):
        resolve_datalist(user, phantom_dir=user, phantom_preset="quick")
    assert fake_generator.calls == []
    assert _tree(user) == before  # nothing written into the user's folder
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "absent"))):
        resolve_datalist(tmp_path / "absent", phantom_dir=tmp_path / "ph")
    assert not (tmp_path / "absent").exists() and not (tmp_path / "ph").exists()


def test_resolve_datalist_mistyped_datalist_file(tmp_path, datalist, fake_generator):
    with pytest.raises(FileNotFoundError, match=re.escape(str(datalist.parent / "datalst.json")) +
                       ": datalist_file not found"):
        resolve_datalist(datalist.parent, "datalst.json", phantom_dir=tmp_path / "ph")
    with pytest.raises(FileNotFoundError, match="datalist_file not found"):
        resolve_datalist(None, tmp_path / "nope.json", phantom_dir=tmp_path / "ph")
    assert fake_generator.calls == []


@pytest.mark.parametrize("kwargs", [{}, {"phantom_dir": None}, {"phantom_preset": None, "phantom_dir": "x"}])
def test_resolve_datalist_no_data_and_no_phantom_raises(kwargs, fake_generator):
    with pytest.raises(ValueError, match="no data: set dataset_dir"):
        resolve_datalist(**kwargs)
    assert fake_generator.calls == []


# ------------------------------------------------------------------------------------------ segmentation items


def test_segmentation_items_masks_and_single_label(tmp_path):
    for name in ("a_m0", "a_m1", "b_m0", "c_lab", "d_lab", "f_m0"):  # MONAI makes other keys absolute if they exist
        (tmp_path / f"{name}.png").write_bytes(b"png")
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [
        {"image": "a.png", "masks": ["a_m0.png", "a_m1.png"], "mask_weights": [0.7, 0.3], "split": "training"},
        {"image": "b.png", "masks": ["b_m0.png"], "split": "training"},  # no weights given
        {"image": "c.png", "label_map": "c_lab.png", "label": 1, "split": "training"},
        {"image": "d.png", "label": "d_lab.png", "split": "training"},  # MONAI Label's datastore
        {"image": "e.png", "label": 0, "split": "training"},  # classification only: skipped
        {"image": "f.png", "masks": ["f_m0.png"], "split": "validation"},  # other split
    ]}))
    items = segmentation_items(path, ["training"], "training")
    r = str(tmp_path)
    assert items == [
        {"image": f"{r}/a.png", "label": [f"{r}/a_m0.png", f"{r}/a_m1.png"], "label_weights": [0.7, 0.3]},
        {"image": f"{r}/b.png", "label": [f"{r}/b_m0.png"]},
        {"image": f"{r}/c.png", "label": f"{r}/c_lab.png"},
        {"image": f"{r}/d.png", "label": f"{r}/d_lab.png"},
    ]
    assert segmentation_items(path, ["training"], "validation", limit=5) == [
        {"image": f"{r}/f.png", "label": [f"{r}/f_m0.png"]}]


def test_segmentation_items_without_masks_raises(datalist):
    with pytest.raises(ValueError, match=re.escape(str(datalist)) + r": no radiographs with annotator masks"):
        segmentation_items(datalist, ["training", "unlabeled"], "training")
    with pytest.raises(ValueError, match="split 'nowhere'"):
        segmentation_items(datalist, ["training"], "nowhere")


# ------------------------------------------------------------------------------------------------ files


def test_datalist_files_lists_existing_references_sorted(tmp_path):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    outside = tmp_path / "outside.nii.gz"
    for p in (root / "img" / "b.png", root / "img" / "a.png", root / "m0.png", outside, root / "s1"):
        p.write_bytes(b"x")
    path = root / "datalist.json"
    path.write_text(json.dumps({
        "training": [
            {"image": "img/b.png", "masks": ["m0.png", "./m0.png"], "subject_id": "s1", "split": "training"},
            {"image": "img/a.png", "label": 1, "extra": {"nested": [str(outside), "img/missing.png"]}},
            {"image": str(root / "img" / "a.png"), "note": "see v1.2", "dir": "img/"},  # duplicate (absolute)
        ],
        "self": "datalist.json",
    }))
    files = datalist_files(path)
    assert files[0] == str(path)
    assert files[1:] == sorted([str(root / "img" / "a.png"), str(root / "img" / "b.png"), str(root / "m0.png"),
                                str(outside)])
    assert len(files) == len(set(files))
    # "s1" (a subject id that happens to name a file), "see v1.2", a folder and a missing file are not files
    assert str(root / "s1") not in files


def test_datalist_files_empty_datalist(tmp_path):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": []}))
    assert datalist_files(path) == [str(path)]
