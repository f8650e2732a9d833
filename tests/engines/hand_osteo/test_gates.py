"""Fitting and calibrating the screening gates: on synthetic screening results, a tiny phantom cohort's masks, and
through :class:`~monai_osteo.handlers.ScreeningGateFitter` on an ignite engine."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from ignite.engine import Engine
from PIL import Image

from monai_osteo.data.labels import BONES
from monai_osteo.data.phantoms.cohort import generate_hand_cohort
from monai_osteo.engines.hand_osteo.baseline import majority_vote
from monai_osteo.engines.hand_osteo.gates import (
    REPORTED,
    SCORES,
    fit_screening_gates,
    gate_items,
    gate_scores,
    reference_layouts,
)
from monai_osteo.handlers import ScreeningGateFitter
from monai_osteo.metrics.anatomy import measure_bone_layout
from monai_osteo.transforms.screening_gates import AnatomyGated, FeatureOODGated, ScreeningGates
from tests.transforms.screening_gate_cases import (
    FEATURE_DIM,
    hand_labels,
    scattered_labels,
    screening_result,
)
from tests.utils import assert_allclose


def three_bone_labels(rng: np.random.Generator) -> np.ndarray:
    """A hand with only ulna, radius and M1 segmented: too few bones for a layout score."""
    labels = hand_labels(rng)
    labels[labels > 3] = 0
    return labels


def cohort_results(seed: int = 0, n_train: int = 30, n_val: int = 40, val_labels=None):
    rng = np.random.default_rng(seed)
    results = [screening_result(rng) for _ in range(n_train)]
    results += [screening_result(rng, None if val_labels is None else val_labels(rng)) for _ in range(n_val)]
    return results, ["training"] * n_train + ["validation"] * n_val


@pytest.fixture(scope="module")
def references() -> list[dict]:
    rng = np.random.default_rng(99)
    return [measure_bone_layout(hand_labels(rng)) for _ in range(20)]


@pytest.fixture(scope="module")
def fitted(references):
    results, splits = cohort_results()
    return fit_screening_gates(results, splits, references, false_rejection_rate=0.1)


def refused(result: dict, gates: ScreeningGates) -> bool:
    scores = gate_scores(result, gates.layout, gates.features)
    return any(not scores[k] <= gates.thresholds[k] for k in SCORES)


# -- fit_screening_gates ----------------------------------------------------------------------------------------------
def test_fit_record(fitted):
    gates, report = fitted
    assert isinstance(gates, ScreeningGates) and set(gates.thresholds) == {*SCORES, *REPORTED}
    assert all(math.isfinite(gates.thresholds[k]) for k in SCORES)
    assert gates.thresholds["fragmentation"] == math.inf  # reported, not gating
    assert report["calibration_scores"]["fragmentation"][-1] == 0.0  # drawn ellipses are single components
    assert gates.info == report
    # the 20 annotator-mask layouts and the segmentation's 30 complete training layouts
    assert report["reference_layouts"] == 20 and report["layouts_fitted"] == 50 == gates.layout.n_fitted
    assert report["feature_patches"] == 30 * len(BONES) == gates.features.n_fitted
    assert report["feature_dim"] == FEATURE_DIM and report["bones"] == list(BONES)
    assert report["fit_split"] == "training" and report["calibration_split"] == ["validation"]
    assert report["calibration_radiographs"] == 40 and report["false_rejection_rate"] == 0.1
    cal = report["calibration"]
    assert {**cal["thresholds"], "fragmentation": math.inf} == gates.thresholds and cal["n"] == {k: 40 for k in SCORES}
    assert cal["uncalibrated"] == [] and cal["false_rejection_rate"] == 0.1
    assert report["calibration_rejection_rate"] == cal["empirical_rejection_rate"]
    assert 0.0 <= report["calibration_rejection_rate"] <= 0.1
    json.dumps(report, allow_nan=False)


def test_fresh_in_distribution_results_pass_at_about_the_stated_rate(fitted):
    gates, _ = fitted
    rng = np.random.default_rng(1)
    fresh = [screening_result(rng) for _ in range(200)]
    rate = np.mean([refused(r, gates) for r in fresh])
    assert rate <= 0.2, rate


def test_shifted_and_scattered_results_are_refused(fitted):
    gates, _ = fitted
    rng = np.random.default_rng(2)
    assert all(refused(screening_result(rng, shift=4.0), gates) for _ in range(20))
    assert all(refused(screening_result(rng, scattered_labels(rng)), gates) for _ in range(10))
    assert refused(screening_result(rng, np.zeros((128, 128), np.uint8)), gates)


def test_saved_fit_gives_the_transforms_the_same_verdicts(fitted, tmp_path):
    gates, _ = fitted
    path = gates.save(tmp_path / "gates.pt")
    anatomy, features = AnatomyGated("pred", gates_file=path), FeatureOODGated("pred", gates_file=path)
    rng = np.random.default_rng(3)
    results = [screening_result(rng) for _ in range(6)] + [screening_result(rng, shift=4.0) for _ in range(3)]
    results += [screening_result(rng, scattered_labels(rng)) for _ in range(3)]
    out = features(anatomy({"pred": results}))["pred"]
    for r, o in zip(results, out):
        scores = gate_scores(r, gates.layout, gates.features)
        verdict = {g["gate"]: g for g in o["gates"]}
        assert verdict["anatomy"]["passed"] is (scores["layout"] <= gates.thresholds["layout"]
                                                and scores["segmentation_uncertainty"]
                                                <= gates.thresholds["segmentation_uncertainty"])
        assert verdict["features"]["passed"] is (scores["features"] <= gates.thresholds["features"])
        assert_allclose(verdict["features"]["feature_score"], scores["features"], atol=1e-4)
        assert_allclose(verdict["anatomy"]["layout_score"], scores["layout"], atol=1e-4)


def test_too_few_calibration_radiographs(references):
    results, splits = cohort_results(n_val=4)
    with pytest.raises(ValueError, match="gate_calibration_split"):
        fit_screening_gates(results, splits, references)
    gates, report = fit_screening_gates(results, splits, references, calibration_split=["training", "validation"])
    assert report["calibration_split"] == ["training", "validation"] and report["calibration_radiographs"] == 34
    assert report["calibration"]["n"]["features"] == 34 and set(gates.thresholds) == {*SCORES, *REPORTED}


def test_input_errors(references):
    results, splits = cohort_results(n_train=3, n_val=5)
    with pytest.raises(ValueError, match="one split per result"):
        fit_screening_gates(results, splits[:-1], references)
    with pytest.raises(ValueError, match="no bone features in split 'training'"):
        fit_screening_gates([{**r, "bone_features": None} for r in results], splits, references)


def test_uncalibrated_layout_threshold_refuses_everything(references, caplog):
    results, splits = cohort_results(n_val=8, val_labels=three_bone_labels)
    with caplog.at_level(logging.WARNING, logger="monai_osteo.hand_osteo"):
        gates, report = fit_screening_gates(results, splits, references, false_rejection_rate=0.1)
    assert gates.thresholds["layout"] == -math.inf
    assert math.isfinite(gates.thresholds["features"]) and gates.thresholds["fragmentation"] == math.inf
    assert report["calibration"]["uncalibrated"] == ["layout"] and report["calibration"]["n"]["layout"] == 0
    assert report["calibration_rejection_rate"] == 1.0
    assert any(r.levelno == logging.WARNING and "could not be calibrated" in r.getMessage() for r in caplog.records)
    assert refused(screening_result(np.random.default_rng(4)), gates)


# -- gate_items / reference_layouts on phantoms -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    return generate_hand_cohort(tmp_path_factory.mktemp("gate_phantoms"), subjects=12, unlabeled=2, height=128,
                                progress=False, workers=1)


def test_gate_items(phantoms):
    raw = json.loads(phantoms.read_text())
    out = gate_items(phantoms)
    assert out["failures"] == []
    expected = [r for key in ("training", "validation") for r in raw[key]]
    assert len(out["items"]) == len(expected) > 0
    for i, (item, rec) in enumerate(zip(out["items"], expected)):
        assert item["index"] == i and item["split"] == rec["split"] in ("training", "validation")
        assert item["source"] == item["image"] and Path(item["image"]) == phantoms.parent / rec["image"]
        assert Path(item["image"]).is_file()
    test = gate_items(phantoms, ("test",))["items"]
    assert [Path(t["image"]) for t in test] == [phantoms.parent / r["image"] for r in raw["test"]]
    assert {t["split"] for t in test} == {"test"}
    with pytest.raises(ValueError, match="no radiograph in splits"):
        gate_items(phantoms, ("nonexistent",))


def test_reference_layouts_are_the_majority_vote_layouts(phantoms):
    raw = json.loads(phantoms.read_text())
    records = [r for key in ("training", "validation", "test", "unlabeled") for r in raw[key]
               if r["split"] == "training" and r.get("masks")]
    layouts = reference_layouts(phantoms)
    assert len(layouts) == len(records) >= 10
    for lay, rec in zip(layouts, records):
        if not rec["bones_missing"]:
            assert lay["present"].all(), rec["subject_id"]
        masks = [np.asarray(Image.open(phantoms.parent / m)).astype(np.int64) for m in rec["masks"]]
        direct = measure_bone_layout(majority_vote(masks))
        np.testing.assert_array_equal(lay["present"], direct["present"])
        assert_allclose(lay["centroid"], direct["centroid"], rtol=1e-10)
        assert_allclose(lay["area"], direct["area"], rtol=1e-10)
    with pytest.raises(ValueError, match="annotator masks"):
        reference_layouts(phantoms, ("nonexistent",))


# -- ScreeningGateFitter ----------------------------------------------------------------------------------------------
def run_engine(fitter: ScreeningGateFitter, results, splits, batch_size: int = 2) -> Engine:
    engine = Engine(lambda e, batch: {"pred": batch["pred"]})
    fitter.attach(engine)
    batches = [{"split": splits[i:i + batch_size], "pred": results[i:i + batch_size]}
               for i in range(0, len(results), batch_size)]
    engine.run(batches, max_epochs=1)
    return engine


def strict_json(path: Path) -> dict:
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_gate_fitter_saves_gates_and_a_strict_json_record(references, tmp_path):
    results, splits = cohort_results(n_train=12, n_val=10)
    fitter = ScreeningGateFitter(tmp_path / "gates.pt", references=references, false_rejection_rate=0.1)
    run_engine(fitter, results, splits)
    run_engine(fitter, results, splits)  # a second run starts afresh
    assert len(fitter.results) == len(results) and fitter.splits == splits
    assert (tmp_path / "gates.pt").is_file() and (tmp_path / "gates.json").is_file()
    record = strict_json(tmp_path / "gates.json")
    gates = ScreeningGates.load(tmp_path / "gates.pt")
    assert record["thresholds"] == {k: v if math.isfinite(v) else None for k, v in gates.thresholds.items()}
    assert set(gates.thresholds) == {*SCORES, *REPORTED} and record["thresholds"]["fragmentation"] is None
    assert record["gates_file"] == "gates.pt" and record["calibration_radiographs"] == 10
    assert record["feature_patches"] == 12 * len(BONES) and record["reference_layouts"] == 20


def test_gate_fitter_reads_the_datalist_masks_and_writes_none_for_inf(phantoms, tmp_path):
    results, splits = cohort_results(n_train=12, n_val=6, val_labels=three_bone_labels)
    fitter = ScreeningGateFitter(tmp_path / "g" / "gates.pt", datalist=phantoms, report_file=tmp_path / "fit.json")
    run_engine(fitter, results, splits, batch_size=1)
    record = strict_json(tmp_path / "fit.json")
    gates = ScreeningGates.load(tmp_path / "g" / "gates.pt")
    assert gates.thresholds["layout"] == -math.inf and record["thresholds"]["layout"] is None
    assert {k: v for k, v in record["thresholds"].items() if k not in ("layout", "fragmentation")} == {
        k: v for k, v in gates.thresholds.items() if k not in ("layout", "fragmentation")}
    assert record["calibration"]["uncalibrated"] == ["layout"]
    assert record["reference_layouts"] == len(reference_layouts(phantoms))


def test_gate_fitter_needs_exactly_one_reference_source(references, tmp_path):
    with pytest.raises(ValueError, match="exactly one of datalist"):
        ScreeningGateFitter(tmp_path / "gates.pt")
    with pytest.raises(ValueError, match="exactly one of datalist"):
        ScreeningGateFitter(tmp_path / "gates.pt", datalist=tmp_path / "datalist.json", references=references)
