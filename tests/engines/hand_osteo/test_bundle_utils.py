"""list_radiographs: supported suffixes and suffix-less DICOM, recursive and sorted; errors name the path."""

from __future__ import annotations

import re

import pytest

from monai_osteo.engines.hand_osteo.bundle_utils import list_radiographs


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(b"png")
    (root / "b.dcm").write_bytes(b"dcm")
    (root / "c").write_bytes(b"\0" * 128 + b"DICM" + b"rest")  # DICOM without suffix: recognised by its preamble
    (root / "not_dicom").write_bytes(b"\0" * 128 + b"NOPE")
    (root / "short").write_bytes(b"\0" * 10)
    (root / "d.txt").write_text("notes")
    (root / ".hidden.png").write_bytes(b"png")
    (root / "sub" / "e.nii.gz").write_bytes(b"nii")
    (root / "sub" / "F.PNG").write_bytes(b"png")  # suffixes are case-insensitive
    return root


def test_list_radiographs_folder(folder):
    expected = sorted(str(p) for p in [folder / "a.png", folder / "b.dcm", folder / "c", folder / "sub" / "F.PNG",
                                       folder / "sub" / "e.nii.gz"])
    assert list_radiographs(folder) == expected
    assert list_radiographs(str(folder)) == expected


def test_list_radiographs_single_file_and_list(folder):
    assert list_radiographs(folder / "d.txt") == [str(folder / "d.txt")]  # an explicit file is taken as is
    assert list_radiographs([folder / "x.png", "y.dcm"]) == [str(folder / "x.png"), "y.dcm"]  # passes through
    assert list_radiographs(("y.dcm",)) == ["y.dcm"]


def test_list_radiographs_missing_raises_naming_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + ": no such file or folder"):
        list_radiographs(missing)


def test_list_radiographs_empty_folder_warns(tmp_path, caplog):
    (tmp_path / "notes.txt").write_text("x")
    with caplog.at_level("WARNING", logger="monai_osteo.hand_osteo"):
        assert list_radiographs(tmp_path) == []
    assert "no radiograph files found" in caplog.text


def test_list_radiographs_uid_named_dicom(tmp_path):
    (tmp_path / "1.2.840.113619.2.55.3").write_bytes(b"\0" * 128 + b"DICM")
    assert list_radiographs(tmp_path) == [str(tmp_path / "1.2.840.113619.2.55.3")]
