"""list_radiographs: supported suffixes and suffix-less DICOM, recursive and sorted; errors name the path.
output_id / output_name_formatter: output names that reveal neither the patient nor the file."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from monai.data.folder_layout import default_name_formatter

from monai_osteo.bundle.paths import list_radiographs, output_id, output_name_formatter


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


def test_list_radiographs_hidden_folder_skipped(folder):
    (folder / ".cache").mkdir()
    (folder / ".cache" / "g.png").write_bytes(b"png")
    assert str(folder / ".cache" / "g.png") not in list_radiographs(folder)


def test_list_radiographs_single_file_and_list(folder):
    assert list_radiographs(folder / "d.txt") == [str(folder / "d.txt")]  # an explicit file is taken as is
    assert list_radiographs([folder / "x.png", "y.dcm"]) == [str(folder / "x.png"), "y.dcm"]  # passes through
    assert list_radiographs(("y.dcm",)) == ["y.dcm"]


def test_list_radiographs_missing_raises_naming_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + ": no such file or folder"):
        list_radiographs(missing)


def test_list_radiographs_missing_ok_gives_empty_list(tmp_path, caplog):
    missing = tmp_path / "nowhere"
    with caplog.at_level("WARNING", logger="monai_osteo.bundle"):
        assert list_radiographs(missing, missing_ok=True) == []
    assert not missing.exists()
    assert list_radiographs(str(missing), missing_ok=True) == []


def test_list_radiographs_empty_folder_warns(tmp_path, caplog):
    (tmp_path / "notes.txt").write_text("x")
    with caplog.at_level("WARNING", logger="monai_osteo.bundle"):
        assert list_radiographs(tmp_path) == []
    assert "no radiograph files found" in caplog.text
    assert any(r.name == "monai_osteo.bundle" for r in caplog.records)


def test_list_radiographs_uid_named_dicom(tmp_path):
    (tmp_path / "1.2.840.113619.2.55.3").write_bytes(b"\0" * 128 + b"DICM")
    assert list_radiographs(tmp_path) == [str(tmp_path / "1.2.840.113619.2.55.3")]


@pytest.mark.parametrize("source", ["/data/Doe_John.png", "/pacs/1.2.840.113619/IM0001"])
def test_output_id_deterministic_and_anonymous(source):
    a, b = output_id(source, index=3), output_id(source, index=3)
    assert a == b
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    assert a == f"r00003_{digest}"
    assert output_id(source) == f"r{digest}"
    stem = source.rsplit("/", 1)[-1].split(".")[0]
    for part in (source, source.rsplit("/", 1)[-1], stem, "Doe", "John"):
        assert part not in a and part not in output_id(source)
    assert re.fullmatch(r"r\d{5}_[0-9a-f]{8}", a)


def test_output_id_distinguishes_sources():
    assert output_id("/a/x.png") != output_id("/b/x.png")  # same file name, other folder
    assert output_id("/a/x.png", 0) != output_id("/a/x.png", 1)
    assert output_id(Path("/a/x.png")) == output_id("/a/x.png")  # path-likes as strings


def test_output_name_formatter_anonymous_by_default():
    meta = {"filename_or_obj": "/x/Doe_John.png", "patch_index": 2}
    out = output_name_formatter(False)(meta, saver=None)
    assert "Doe" not in out["subject"] and "John" not in out["subject"]
    assert out == {"subject": output_id("/x/Doe_John.png"), "idx": 2}
    assert output_name_formatter()({"filename_or_obj": "/x/Doe_John.png"}, None)["idx"] is None


def test_output_name_formatter_record_source_is_monai_default():
    meta = {"filename_or_obj": "/x/Doe_John.png"}
    out = output_name_formatter(True)(meta, saver=None)
    assert out == default_name_formatter(meta, None)
    assert out["subject"] == "/x/Doe_John.png"
