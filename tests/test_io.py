"""Atomic writes: the new content or the previous file, never a half-written one, and no temporary file left."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from monai_osteo.io import atomic_copy, atomic_save, atomic_write, atomic_write_json, atomic_write_text


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
    atomic_save({"w": torch.arange(3)}, path)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails inside the write
        atomic_save({"f": lambda: 0}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert torch.equal(torch.load(path)["w"], torch.arange(3))


def test_atomic_write_text_utf8_and_returns_path(tmp_path):
    path = tmp_path / "a" / "b" / "note.txt"
    assert atomic_write_text(path, "Müller ✓\n") == path
    assert path.read_bytes() == "Müller ✓\n".encode()
    atomic_write_text(path, "second")
    assert path.read_text() == "second"  # replaced, not appended
    assert [p.name for p in path.parent.iterdir()] == ["note.txt"]


def test_atomic_write_exception_leaves_no_temp_and_no_file(tmp_path):
    path = tmp_path / "new.bin"
    seen = []

    def write(f):
        f.write(b"partial")
        seen.append(f.name)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, write)
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file
    assert seen and seen[0] != str(path)  # the partial bytes went to another (temporary) name


def test_atomic_write_keyboard_interrupt_keeps_previous(tmp_path):
    path = tmp_path / "data.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def write(f):
        f.write(b"new but ")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_atomic_copy_content_equal_no_temp(tmp_path):
    src = tmp_path / "src.bin"
    payload = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()  # several copy chunks
    src.write_bytes(payload)
    dst = tmp_path / "out" / "dst.bin"
    assert atomic_copy(src, dst) == dst
    assert dst.read_bytes() == payload
    assert [p.name for p in dst.parent.iterdir()] == ["dst.bin"]
    assert src.read_bytes() == payload  # the source is untouched


def test_atomic_copy_failure_mid_write_keeps_previous(tmp_path, monkeypatch):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 1000)
    dst = tmp_path / "dst.bin"
    dst.write_bytes(b"previous")

    def failing_copy(fin, fout, *args, **kwargs):
        fout.write(fin.read(10))
        raise OSError("read error")

    monkeypatch.setattr("monai_osteo.io.shutil.copyfileobj", failing_copy)
    with pytest.raises(OSError, match="read error"):
        atomic_copy(src, dst)
    assert dst.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst.bin", "src.bin"]


def test_atomic_copy_missing_source_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_copy(tmp_path / "nope.bin", tmp_path / "out" / "dst.bin")
    assert list(tmp_path.iterdir()) == []


def test_atomic_files_get_the_permissions_open_would_give(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        assert (path.stat().st_mode & 0o777) == 0o644  # not mkstemp's 0600
        with open(tmp_path / "b.txt", "w") as f:
            f.write("x")
        assert (path.stat().st_mode & 0o777) == ((tmp_path / "b.txt").stat().st_mode & 0o777)
    finally:
        os.umask(old)
