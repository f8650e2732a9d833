"""Phantom hand cohort: determinism, datalist contract, anatomy options, CLI and caching."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from PIL import Image

from monai_osteo.data.phantoms import (
    BONE_LABELS,
    ensure_hand_cohort,
    generate_hand_cohort,
    place_hand,
    render_hand,
    sample_cohort_subjects,
    sample_subject,
)
from monai_osteo.data.phantoms.__main__ import main as phantoms_cli


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    path = generate_hand_cohort(out, subjects=20, unlabeled=10, height=160, seed=3, workers=2, progress=False)
    return out, json.loads(path.read_text())


def test_same_seed_gives_byte_identical_files_whatever_the_workers(small, tmp_path):
    out, _ = small
    generate_hand_cohort(tmp_path / "again", subjects=20, unlabeled=10, height=160, seed=3, workers=1, progress=False)
    assert _digest(out) == _digest(tmp_path / "again")
    generate_hand_cohort(tmp_path / "other", subjects=20, unlabeled=10, height=160, seed=4, workers=1, progress=False)
    assert _digest(out)["images/HX0001.png"] != _digest(tmp_path / "other")["images/HX0001.png"]


def test_datalist_contract(small):
    out, dl = small
    lab = dl["training"] + dl["validation"] + dl["test"]
    assert len(lab) == 20 and len(dl["unlabeled"]) == 10
    assert dl["labels"] == {"0": "background", **{str(v): k for k, v in BONE_LABELS.items()}}
    assert sum(r["label"] for r in lab) == round(0.28 * 20)
    for r in lab + dl["unlabeled"]:
        assert (out / r["image"]).is_file() and (out / r["mask_truth"]).is_file()
        assert len(r["masks"]) == len(r["mask_weights"]) == 3
        assert abs(sum(r["mask_weights"]) - 1.0) < 1e-6 and min(r["mask_weights"]) > 0
        img = np.asarray(Image.open(out / r["image"]))
        assert img.dtype == np.uint16 and img.shape == (160, 112)
        for m in r["masks"]:
            mask = np.asarray(Image.open(out / m))
            assert mask.shape == img.shape and mask.max() <= 7
    for r in lab:
        assert r["label"] == int(r["t_score"] < -2.5)
        assert r["sex"] in ("F", "M") and 10 <= r["age"] < 90
    assert all("label" not in r for r in dl["unlabeled"])
    # subject-wise 80/10/10 split, stratified by label
    assert [len(dl[k]) for k in ("training", "validation", "test")] == [16, 2, 2]
    assert all(r["split"] == k for k in ("training", "validation", "test") for r in dl[k])
    # MONAI reads it and resolves the relative paths
    items = load_decathlon_datalist(out / "datalist.json", data_list_key="training")
    assert Path(items[0]["image"]).is_file() and all(Path(m).is_file() for m in items[0]["masks"])


def test_annotators_differ_only_near_boundaries(small):
    out, dl = small
    r = dl["training"][0]
    truth = np.asarray(Image.open(out / r["mask_truth"]))
    masks = [np.asarray(Image.open(out / m)) for m in r["masks"]]
    assert any((m != masks[0]).any() for m in masks[1:])
    from scipy import ndimage

    near = ndimage.binary_dilation(ndimage.morphological_gradient(truth, size=3) > 0, iterations=3)
    for m in masks:
        assert not ((m != truth) & ~near).any()


def test_prevalence_is_exact_and_phenotype_follows_t_score():
    subjects = sample_cohort_subjects(200, np.random.default_rng(0), prevalence=0.28)
    assert sum(s.label for s in subjects) == 56
    t = np.array([s.t_score for s in subjects])
    ci = np.array([s.cortical_index for s in subjects])
    trab = np.array([s.trabecular_fraction for s in subjects])
    assert np.corrcoef(t, ci)[0, 1] > 0.5 and np.corrcoef(t, trab)[0, 1] > 0.5
    natural = sample_cohort_subjects(4000, np.random.default_rng(1), prevalence=None)
    assert 0.24 <= np.mean([s.label for s in natural]) <= 0.32
    with pytest.raises(ValueError, match="prevalence"):
        sample_cohort_subjects(10, np.random.default_rng(0), prevalence=1.5)


def test_missing_bone_and_ring_are_rendered():
    rng = np.random.default_rng(7)
    subject = sample_subject(rng)
    hand = place_hand(subject, rng, (290.0, 203.0), ring_p=1.0, missing_p=1.0)
    assert hand.ring is not None and len(hand.missing) == 1
    r = render_hand(hand, (384, 269), 290.0 / 384, rng)
    assert BONE_LABELS[hand.missing[0]] not in np.unique(r.truth)
    assert len(np.unique(r.truth)) == 7  # background + the 6 bones present
    assert r.acquisition["ring"] and r.acquisition["missing_bones"] == hand.missing
    plain = render_hand(place_hand(subject, np.random.default_rng(7), (290.0, 203.0), ring_p=0.0, missing_p=0.0),
                        (384, 269), 290.0 / 384, np.random.default_rng(8))
    assert len(np.unique(plain.truth)) == 8


def test_cli_and_cache(tmp_path, caplog):
    out = tmp_path / "cli"
    assert phantoms_cli(["hand", "--out", str(out), "--subjects", "4", "--unlabeled", "2", "--height", "128",
                         "--quiet", "--workers", "1"]) == 0
    assert len(json.loads((out / "datalist.json").read_text())["unlabeled"]) == 2
    assert phantoms_cli(["hand", "--out", str(out), "--subjects", "0", "--unlabeled", "0", "--quiet"]) == 1
    assert "subjects and unlabeled" in caplog.text
    cached = ensure_hand_cohort(tmp_path / "c", "quick", subjects=4, unlabeled=2, height=128, workers=1, progress=False)
    stamp = cached.stat().st_mtime_ns
    again = ensure_hand_cohort(tmp_path / "c", "quick", subjects=4, unlabeled=2, height=128, workers=1,
                               progress=False)
    assert again == cached and again.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="preset must be one of"):
        ensure_hand_cohort(tmp_path / "c", "huge")


def test_no_temporary_files_left(small):
    out, _ = small
    assert not [p for p in out.rglob(".*") if p.is_file()]
