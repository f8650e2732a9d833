"""Screening report and per-bone contribution PNGs: written atomically, readable, robust to missing bones."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from monai_osteo.data.phantoms.anatomy import BONE_LABELS  # noqa: E402
from monai_osteo.report import (  # noqa: E402
    bone_contributions,
    save_bone_contribution_png,
    save_screening_report_png,
)


def _case(h: int = 96, w: int = 64, found=tuple(BONE_LABELS)):
    rng = np.random.default_rng(0)
    image = rng.normal(1000.0, 200.0, (h, w))  # raw detector counts, not [0, 1]
    labels = np.zeros((h, w), dtype=np.int64)
    for i, name in enumerate(BONE_LABELS):
        if name in found:
            labels[10 + 10 * i : 16 + 10 * i, 8 : w - 8] = BONE_LABELS[name]
    probs = {name: (0.1 + 0.1 * i if name in found else None) for i, name in enumerate(BONE_LABELS)}
    return image, labels, probs


def _read(path):
    img = plt.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    assert img[..., :3].std() > 0.05  # not a blank canvas
    return img


def _no_temp_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".png" and p.name.startswith("tmp"))


@pytest.mark.parametrize("with_uncertainty", [False, True])
def test_report_written_readable_no_leaks(tmp_path, with_uncertainty):
    image, labels, probs = _case()
    unc = np.random.default_rng(1).random((24, 16)) if with_uncertainty else None  # lower resolution than image
    before = plt.get_fignums()
    out = save_screening_report_png(tmp_path / "sub" / "report.png", image, labels, probs, "osteoporosis", 0.73,
                                    threshold=0.5, uncertainty=unc, qc_flags=(), title="subject 001")
    assert out == tmp_path / "sub" / "report.png" and out.stat().st_size > 10_000
    img = _read(out)
    assert plt.get_fignums() == before
    assert _no_temp_files(out.parent) == []
    if with_uncertainty:  # the third panel makes the page wider
        narrow = save_screening_report_png(tmp_path / "narrow.png", image, labels, probs, "osteoporosis", 0.73)
        assert plt.imread(narrow).shape[1] < img.shape[1]


def test_report_missing_bones_and_qc_flags(tmp_path):
    image, labels, probs = _case(found=("ulna", "radius", "M2"))
    del probs["M5"]  # absent from the mapping counts as not found too
    out = save_screening_report_png(str(tmp_path / "r.png"), image, labels, probs, "no osteoporosis", 0.2,
                                    qc_flags=["missing_bones", "low_segmentation_confidence"])
    _read(out)
    # no bone at all, constant image
    out = save_screening_report_png(tmp_path / "empty.png", np.zeros((32, 32)), np.zeros((32, 32), int),
                                    {}, "no osteoporosis", 0.0)
    _read(out)


def test_report_failing_write_leaves_nothing(tmp_path):
    image, labels, probs = _case()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    before = plt.get_fignums()
    with pytest.raises(OSError):
        save_screening_report_png(blocker / "report.png", image, labels, probs, "osteoporosis", 0.7)
    # target is an existing directory: rendering succeeds, the final rename fails
    target = tmp_path / "is_a_dir.png"
    target.mkdir()
    with pytest.raises(OSError):
        save_screening_report_png(target, image, labels, probs, "osteoporosis", 0.7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "is_a_dir.png"]
    assert list(target.iterdir()) == []
    assert plt.get_fignums() == before


def test_report_overwrites_atomically(tmp_path):
    image, labels, probs = _case()
    path = tmp_path / "r.png"
    path.write_bytes(b"old")
    save_screening_report_png(path, image, labels, probs, "osteoporosis", 0.7)
    _read(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.png"]


def test_report_validation(tmp_path):
    image, labels, probs = _case()
    p = tmp_path / "r.png"
    with pytest.raises(ValueError, match="labels must have the image's shape"):
        save_screening_report_png(p, image, labels[:10], probs, "x", 0.5)
    with pytest.raises(ValueError, match="image must be a 2-D"):
        save_screening_report_png(p, image[None], labels, probs, "x", 0.5)
    with pytest.raises(ValueError, match="values in 0..7"):
        save_screening_report_png(p, image, labels + 8, probs, "x", 0.5)
    with pytest.raises(ValueError, match="keys must be among"):
        save_screening_report_png(p, image, labels, {"M6": 0.5}, "x", 0.5)
    with pytest.raises(ValueError, match="probability must be a probability"):
        save_screening_report_png(p, image, labels, probs, "x", 1.5)
    with pytest.raises(ValueError, match=r"bone_probabilities\['M1'\]"):
        save_screening_report_png(p, image, labels, {**probs, "M1": float("nan")}, "x", 0.5)
    with pytest.raises(ValueError, match="uncertainty must be"):
        save_screening_report_png(p, image, labels, probs, "x", 0.5, uncertainty=np.zeros(5))
    assert not p.exists()


def test_bone_contributions_only_true_positives():
    records = [
        {"label": 1, "decision": 1, "bone_probabilities": {"ulna": 0.9, "radius": None, "M1": 0.7}},  # TP
        {"label": 1, "decision": 0, "bone_probabilities": {"ulna": 0.1, "radius": 0.2, "M1": 0.3}},  # FN
        {"label": 0, "decision": 1, "bone_probabilities": {"ulna": 0.8, "radius": 0.8, "M1": 0.8}},  # FP
        {"label": 0, "decision": 0, "bone_probabilities": {"ulna": 0.0, "radius": 0.0, "M1": 0.0}},  # TN
        {"label": 1, "decision": 1, "bone_probabilities": {"ulna": 0.6, "radius": 0.5, "M1": float("nan")}},  # TP
    ]
    out = bone_contributions(records, ["ulna", "radius", "M1", "M5"])
    assert list(out) == ["ulna", "radius", "M1", "M5"]
    assert out == {"ulna": [0.9, 0.6], "radius": [0.5], "M1": [0.7], "M5": []}
    with pytest.raises(ValueError, match="missing"):
        bone_contributions([{"label": 1}], ["ulna"])


def test_contribution_png(tmp_path):
    rng = np.random.default_rng(0)
    per_bone = {name: rng.uniform(0.4, 0.9, size=5 + i).tolist() for i, name in enumerate(BONE_LABELS)}
    per_bone["M3"] = []  # no true positive had this bone
    del per_bone["M5"]
    before = plt.get_fignums()
    out = save_bone_contribution_png(tmp_path / "fig5.png", per_bone)
    img = plt.imread(out)
    assert img.shape[0] > 300 and img.shape[1] > 500 and img[..., :3].std() > 0.05
    assert out.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig5.png"]
    assert plt.get_fignums() == before
    save_bone_contribution_png(tmp_path / "none.png", {})  # everything empty still draws
    with pytest.raises(ValueError, match="keys must be among"):
        save_bone_contribution_png(tmp_path / "bad.png", {"thumb": [0.5]})
    with pytest.raises(ValueError, match=r"per_bone\['ulna'\]"):
        save_bone_contribution_png(tmp_path / "bad.png", {"ulna": [0.5, float("nan")]})
    assert not (tmp_path / "bad.png").exists()
