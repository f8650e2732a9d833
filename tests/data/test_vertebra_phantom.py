"""The vertebral-CT phantom's files: CLI, datalist shape (patient-wise splits, D test only, pre-training from
training patients only), NIfTI headers, VerSe labels, byte-identical output per seed whatever the worker count,
reported failures; and what the CT reader and the ROI transform make of it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_osteo.data.phantoms.__main__ import main
from monai_osteo.data.phantoms.vertebra import (
    LEVELS,
    VERSE_LABELS,
    ensure_vertebra_cohort,
    generate_vertebra_cohort,
    position_of,
    relabel_to_verse,
)

SMALL = {"A": (2, 1, 1), "D": (0, 0, 1)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("vertebra_tiny")
    assert main(["vertebra", "--out", str(out), "--preset", "tiny", "--quiet", "--workers", "2"]) == 0
    return out, json.loads((out / "datalist.json").read_text())


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def test_datalist_shape_and_splits(tiny):
    out, dl = tiny
    assert dl["label_convention"].startswith("VerSe") and dl["levels"] == list(LEVELS)
    patients = {p["patient_id"]: p for p in dl["patients"]}
    assert len(patients) == 34
    for split in ("training", "validation", "test"):
        for r in dl[split]:
            assert r["labeled"] and r["split"] == split and patients[r["patient_id"]]["split"] == split
            assert r["level"] in ("L1", "L2", "L3", "L4") and r["label"] == int(r["t_score"] <= -2.5)
            assert r["position"] == position_of(r["level"]) and r["verse_label"] == VERSE_LABELS[r["level"]]
            assert (out / r["image"]).is_file() and (out / r["vertebrae"]).is_file()
    assert {r["site"] for s in ("training", "validation") for r in dl[s]} <= {"A", "B", "C"}  # D: external test
    assert {p["site"] for p in dl["patients"] if p["site"] == "D"} and all(
        p["split"] == "test" for p in dl["patients"] if p["site"] == "D")
    assert {r["patient_id"] for r in dl["unlabeled"]} == {p for p, v in patients.items() if v["split"] == "training"}
    assert all(not r["labeled"] and "label" not in r and "t_score" not in r for r in dl["unlabeled"])
    assert sum(len(p["levels"]) for p in dl["patients"] if p["split"] == "training") == len(dl["unlabeled"])
    devices = {r["site"]: (r["dxa_device"], r["device_index"]) for r in dl["test"]}
    assert devices.get("A") == ("Hologic", 0) and devices.get("D") == ("Hologic", 0)


def test_nifti_headers_and_label_maps(tiny):
    out, dl = tiny
    for p in dl["patients"][:6]:
        ct, lab = nib.load(out / p["image"]), nib.load(out / p["vertebrae"])
        assert ct.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
        assert np.allclose(ct.affine, lab.affine) and ct.shape == lab.shape
        assert np.allclose(ct.header.get_zooms(), p["spacing"], atol=1e-3)
        assert np.all(np.diag(ct.affine)[:3] > 0)  # RAS: +x right, +y anterior, +z superior
        values = set(np.unique(np.asarray(lab.dataobj)).tolist()) - {0}
        assert values == {VERSE_LABELS[lv] for lv in p["levels"]}
        hu = np.asarray(ct.dataobj)
        assert -1024 <= hu.min() < -40 and hu.max() > 300  # fat and bone
        # cranial levels lie higher (+z) than caudal ones
        arr = np.asarray(lab.dataobj)
        z = [np.nonzero(arr == VERSE_LABELS[lv])[2].mean() for lv in p["levels"]]
        assert np.all(np.diff(z) < 0)


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = generate_vertebra_cohort(tmp_path / "a", preset="tiny", patients=SMALL, workers=1, progress=False).parent
    b = generate_vertebra_cohort(tmp_path / "b", preset="tiny", patients=SMALL, workers=2, progress=False).parent
    c = generate_vertebra_cohort(tmp_path / "c", preset="tiny", patients=SMALL, seed=1, workers=2, progress=False)
    assert _digest(a) == _digest(b)
    assert _digest(a)["ct/P00001.nii.gz"] != _digest(c.parent)["ct/P00001.nii.gz"]
    # the cache is reused when unchanged, regenerated when an option differs
    before = (a / "datalist.json").stat().st_mtime_ns
    assert ensure_vertebra_cohort(a, preset="tiny", patients=SMALL) == a / "datalist.json"
    assert (a / "datalist.json").stat().st_mtime_ns == before
    ensure_vertebra_cohort(a, preset="tiny", patients=SMALL, device_bias_scale=0.0, progress=False)
    assert json.loads((a / "cohort.json").read_text())["device_bias_scale"] == 0.0


def test_failures_are_reported_and_the_rest_written(tmp_path, monkeypatch):
    from monai_osteo.data.phantoms.vertebra import cohort

    real = cohort.render_patient

    def flaky(patient, rng, fine_mm):
        if patient.patient_id == "P00002":
            raise RuntimeError("boom")
        return real(patient, rng, fine_mm=fine_mm)

    monkeypatch.setattr(cohort, "render_patient", flaky)
    with pytest.raises(RuntimeError, match=r"1 of 5 phantom patients failed \(first: P00002: RuntimeError: boom\)"):
        generate_vertebra_cohort(tmp_path, preset="tiny", patients=SMALL, workers=1, progress=False)
    meta = json.loads((tmp_path / "cohort.json").read_text())
    assert meta["failures"] == ["P00002: RuntimeError: boom"] and (tmp_path / "ct" / "P00001.nii.gz").is_file()
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.tmp*"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="preset must be one of"):
        generate_vertebra_cohort("/nonexistent", preset="huge")
    with pytest.raises(ValueError, match="patients must map sites"):
        generate_vertebra_cohort("/nonexistent", preset="tiny", patients={"E": (1, 0, 0)})
    assert main(["vertebra", "--out", "/nonexistent/x", "--preset", "tiny", "--texture_signal", "3", "--quiet"]) == 1


def test_relabel_other_conventions():
    arr = np.array([[0, 5, 6], [7, 99, 5]])
    out = relabel_to_verse(arr, {5: "vertebrae_L1", 6: "T12", 7: "vertebrae_l5", 99: "sacrum_x"})
    assert out.tolist() == [[0, 20, 19], [24, 0, 20]]


def test_reader_and_roi_transform_on_the_phantom(tiny):
    from monai_osteo.data.readers import LoadCTd
    from monai_osteo.transforms.vertebra import ExtractVertebraROId

    out, dl = tiny
    rec = dict(dl["training"][0])
    rec["image"], rec["vertebrae"] = str(out / rec["image"]), str(out / rec["vertebrae"])
    x = LoadCTd(keys=("image", "vertebrae"), label_keys=("vertebrae",))(rec)
    roi = ExtractVertebraROId(keys="image", label_key="vertebrae", roi_size=32, roi_spacing=1.5)(x)
    assert roi["image"].shape == (1, 32, 32, 32) and roi["level"] == dl["training"][0]["level"]
    body = roi["mask"][0].numpy() > 0
    hu = roi["image"][0].numpy()
    assert 0.05 < body.mean() < 0.6 and -150 < hu[body].mean() < 450 and hu[~body].mean() < hu[body].mean()


def test_level_is_learnable_from_geometry_but_not_trivially(tiny):
    from monai_osteo.data.phantoms.vertebra.honesty import level_identifiability, measure_vertebrae

    out, _ = tiny
    rep = level_identifiability(measure_vertebrae(out / "datalist.json", splits=("unlabeled",), texture=False))
    print("\nlevel identifiability (tiny):", rep)
    assert rep["vertebrae"] >= 200
    assert rep["thoracic_vs_lumbar_accuracy"] >= 0.85  # bodies grow caudally
    assert 0.3 <= rep["l1_to_l4_accuracy"] <= 0.75  # neighbouring lumbar levels overlap (chance 0.25)
