"""OOD evaluation set of the screening gates: contents, loadability, determinism, subsets, manifest and CLI."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from monai_osteo.data import LoadRadiograph
from monai_osteo.data.ood_set import CATEGORIES, MANIFEST_NAME, build_ood_set, main
from monai_osteo.data.readers import RadiographReadError

#: every category has at least 8 images in an environment with the test extra (pydicom-data) installed
MIN_PER_CATEGORY = {"dicom_other": 8, "natural": 8, "phantom_no_hand": 8, "synthetic": 8}
HAS_PYDICOM_DATA = importlib.util.find_spec("data_store") is not None
NAME = re.compile(r"^(?P<category>[a-z_]+)_(?P<number>\d{2})\.(png|dcm)$")


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _digests(records: list[dict]) -> dict[str, str]:
    return {Path(r["image"]).name: _sha(r["image"]) for r in records}


def _dicom_source(source: str) -> Path:
    """File behind a record ``source`` such as "pydicom-data RG1_UNCR.dcm" or "pydicom test_files CT_small.dcm"."""
    package, name = ("data_store", "data") if source.startswith("pydicom-data ") else ("pydicom", "data/test_files")
    root = Path(list(importlib.util.find_spec(package).submodule_search_locations)[0])
    return root / name / source.split()[-1]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("ood")
    return out, build_ood_set(out, seed=0)


def test_size_categories_and_record_contract(full):
    out, records = full
    assert len(records) >= 60
    counts = Counter(r["category"] for r in records)
    assert set(counts) == set(CATEGORIES)
    for category, minimum in MIN_PER_CATEGORY.items():
        assert counts[category] >= minimum, (category, counts[category])
    assert len({r["image"] for r in records}) == len(records)
    for r in records:
        assert set(r) == {"image", "category", "source", "description", "expect"}
        assert r["expect"] in ("screen", "read_error")
        assert r["source"] and r["description"] and "\n" not in r["description"]
        path = Path(r["image"])
        assert path.is_absolute() and path.is_file() and path.parent == out.resolve()
        m = NAME.match(path.name)
        assert m and m["category"] == r["category"], path.name
    assert [r["category"] for r in records] == sorted((r["category"] for r in records), key=CATEGORIES.index)


def test_screen_files_load_and_read_error_files_are_refused(full):
    _, records = full
    loader = LoadRadiograph()
    for r in records:
        if r["expect"] == "screen":
            img = loader(r["image"])
            assert img.ndim == 3 and img.shape[0] == 1 and min(img.shape[1:]) >= 1, (r["image"], img.shape)
            x = img.numpy()
            assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0, r["image"]
        else:
            with pytest.raises(RadiographReadError):
                loader(r["image"])
    assert sum(r["expect"] == "read_error" for r in records) >= 1


def test_dicom_files_are_unchanged_distinct_single_frame_copies(full):
    _, records = full
    dicoms = [r for r in records if r["image"].endswith(".dcm")]
    assert all(r["category"] == "dicom_other" for r in dicoms) and len(dicoms) >= 8
    sources = [r["source"] for r in dicoms]
    assert len(set(sources)) == len(sources)
    if HAS_PYDICOM_DATA:  # the chest and lower-leg CR a user tried come first
        assert sources[:2] == ["pydicom-data RG1_UNCR.dcm", "pydicom-data RG3_UNCR.dcm"]
    loader = LoadRadiograph()
    pixels = set()
    for r in dicoms:
        assert _sha(r["image"]) == _sha(_dicom_source(r["source"])), r["source"]
        ds = pydicom.dcmread(r["image"], stop_before_pixels=True)
        assert int(ds.get("NumberOfFrames", 1) or 1) == 1
        assert f"Modality {ds.get('Modality', '') or 'not recorded'}" in r["description"]
        body = str(ds.get("BodyPartExamined", "")).strip()
        assert f"BodyPartExamined {body or 'not recorded'}" in r["description"]
        assert not any(w in body.upper() for w in ("HAND", "WRIST", "FINGER"))
        pixels.add(hashlib.sha256(np.round(loader(r["image"]).numpy() * 255).astype(np.uint8).tobytes()).digest())
    assert len(pixels) == len(dicoms), "two DICOM files hold the same image"


def test_file_names_never_carry_a_patient_name(full):
    _, records = full
    for r in records:
        if r["image"].endswith(".dcm"):
            name = Path(r["image"]).name.lower()
            patient = str(pydicom.dcmread(r["image"], stop_before_pixels=True).get("PatientName", ""))
            for part in re.split(r"[\^=\s]+", patient):
                if len(part) >= 3:
                    assert part.lower() not in name, (name, patient)
            assert Path(r["source"].split()[-1]).stem.lower() not in name


def test_colour_stays_colour_grey_stays_grey(full):
    _, records = full
    natural = [r for r in records if r["category"] == "natural"]
    colour = [r for r in natural if "colour (" in r["description"]]
    grey = [r for r in natural if r["source"].endswith("converted to grey")]
    assert len(colour) >= 8 and len(grey) >= 3
    for r in colour:
        with Image.open(r["image"]) as im:
            assert im.mode in ("RGB", "RGBA") and len(im.getbands()) >= 3, (r["source"], im.mode)
    for r in grey + [r for r in natural if r["source"] in ("skimage.data.camera", "skimage.data.moon")]:
        with Image.open(r["image"]) as im:
            assert im.mode == "L", (r["source"], im.mode)
    colour_sources = {r["source"] for r in colour}
    assert {r["source"].removesuffix(", converted to grey") for r in grey} <= colour_sources
    for r in (r for r in records if r["image"].endswith(".png")):  # phantoms keep 16 bits; natural images are 8-bit
        with Image.open(r["image"]) as im:
            if r["category"] == "phantom_no_hand":
                assert im.mode == "I;16"
            if r["category"] == "natural":
                assert im.mode in ("L", "RGB", "RGBA") and max(im.size) <= 1024


def test_same_seed_byte_identical_other_seed_changes_only_the_seeded_files(full, tmp_path):
    _, records = full
    assert _digests(build_ood_set(tmp_path / "again", seed=0)) == _digests(records)
    reference = _digests(records)
    other = build_ood_set(tmp_path / "seed1", seed=1, categories=["phantom_no_hand", "synthetic"])
    assert [Path(r["image"]).name for r in other] == [Path(r["image"]).name for r in records
                                                      if r["category"] in ("phantom_no_hand", "synthetic")]
    changed = {Path(r["image"]).name: _sha(r["image"]) != reference[Path(r["image"]).name] for r in other}
    seeded = {Path(r["image"]).name: r["category"] == "phantom_no_hand" or "(seeded)" in r["source"] for r in other}
    assert changed == seeded
    assert sum(seeded.values()) >= 20


def test_per_category_subset_is_the_start_of_the_full_set_and_manifest_matches(full, tmp_path):
    out, records = full
    assert json.loads((out / MANIFEST_NAME).read_text()) == {"seed": 0, "records": records}
    sub = build_ood_set(tmp_path / "sub", per_category=2)
    assert Counter(r["category"] for r in sub) == {c: 2 for c in CATEGORIES}
    assert json.loads((tmp_path / "sub" / MANIFEST_NAME).read_text()) == {"seed": 0, "records": sub}
    first = {c: [r for r in records if r["category"] == c][:2] for c in CATEGORIES}
    expected = [r for c in CATEGORIES for r in first[c]]
    assert [(r["source"], r["description"], r["expect"]) for r in sub] == [
        (r["source"], r["description"], r["expect"]) for r in expected]
    assert _digests(sub) == _digests(expected)
    only = build_ood_set(tmp_path / "only", categories=["synthetic"], per_category=3)
    assert [Path(r["image"]).name for r in only] == ["synthetic_01.png", "synthetic_02.png", "synthetic_03.png"]


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown categories"):
        build_ood_set(tmp_path, categories=["hands"])
    with pytest.raises(ValueError, match="per_category"):
        build_ood_set(tmp_path, per_category=0)
    with pytest.raises(ValueError, match="seed"):
        build_ood_set(tmp_path, seed=-1)


def test_cli_prints_the_counts(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--seed", "2", "--per-category", "1"]) == 0
    printed = capsys.readouterr().out
    for category in CATEGORIES:
        assert re.search(rf"^{category}\s+1\s+[01]\s+[01]$", printed, re.MULTILINE), printed
    assert re.search(r"^total\s+4\s", printed, re.MULTILINE)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["seed"] == 2 and len(manifest["records"]) == 4
    assert main(["--out", str(tmp_path), "--per-category", "0"]) == 1
