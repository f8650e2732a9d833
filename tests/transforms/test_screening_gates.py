"""Screening gates as post-processing transforms: saved/loaded gates, verdicts per result, decision and QC after them.

Results are built the way :class:`~monai_osteo.inferers.HandScreeningInferer` returns them, with ``layout`` measured
on synthetic 7-bone label maps (a hand, or the same bones scattered) and Gaussian encoder features per bone.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, list_data_collate
from monai.transforms import Compose

from monai_osteo.data.labels import BONE_LABELS, BONES
from monai_osteo.metrics.anatomy import measure_bone_layout
from monai_osteo.metrics.ood import energy_score
from monai_osteo.metrics.quality import screening_qc_flags
from monai_osteo.transforms.screening import ScreeningDecisiond, ScreeningQCd
from monai_osteo.transforms.screening_gates import (
    GATE_FLAGS,
    AnatomyGated,
    FeatureOODGated,
    InputPlausibilityGated,
    ScreeningGates,
    failed_gates,
)
from tests.transforms.screening_gate_cases import (
    FEATURE_DIM,
    SIZE,
    THRESHOLDS,
    bone_features,
    fit_gates,
    hand_labels,
    radiograph,
    scattered_labels,
    screening_result,
)
from tests.utils import assert_allclose


@pytest.fixture(scope="module")
def gates() -> ScreeningGates:
    return fit_gates()


@pytest.fixture(scope="module")
def gates_file(gates, tmp_path_factory):
    path = tmp_path_factory.mktemp("gates") / "gates.pt"
    assert gates.save(path) == path
    return path


def learned(gates_file, enabled: bool = True, thresholds: dict | None = None) -> list:
    return [AnatomyGated("pred", gates_file=gates_file, thresholds=thresholds, enabled=enabled),
            FeatureOODGated("pred", gates_file=gates_file, thresholds=thresholds, enabled=enabled)]


def all_gates(gates_file, enabled: bool = True, thresholds: dict | None = None) -> Compose:
    return Compose([InputPlausibilityGated("pred", enabled=enabled), *learned(gates_file, enabled, thresholds)])


def by_gate(result: dict) -> dict:
    return {g["gate"]: g for g in result["gates"]}


# -- save / load ------------------------------------------------------------------------------------------------------
def test_saved_gates_load_weights_only_and_score_the_same(gates, gates_file):
    state = torch.load(gates_file, map_location="cpu", weights_only=True)
    assert state["version"] == 1 and state["thresholds"] == THRESHOLDS and state["info"] == {"note": "test gates"}
    loaded = ScreeningGates.load(gates_file)
    assert loaded.thresholds == THRESHOLDS and loaded.info == {"note": "test gates"}
    rng = np.random.default_rng(5)
    for labels in (hand_labels(rng), scattered_labels(rng)):
        lay = measure_bone_layout(labels)
        z0, w0 = gates.layout.score(lay)
        z1, w1 = loaded.layout.score(lay)
        assert w0 == w1
        assert_allclose(z1, z0, rtol=1e-10)
    feats = bone_features(rng, BONES)
    assert_allclose(loaded.features.score(feats, BONES), gates.features.score(feats, BONES), rtol=1e-10)


def test_threshold_overrides_and_unknown_keys(gates_file):
    loaded = ScreeningGates.load(gates_file, {"layout": -1.0})
    assert loaded.thresholds == {**THRESHOLDS, "layout": -1.0}
    with pytest.raises(ValueError, match="bogus"):
        ScreeningGates.load(gates_file, {"bogus": 1.0})
    gate = AnatomyGated("pred", gates_file=gates_file, thresholds={"bogus": 1.0})  # read lazily, on first use
    with pytest.raises(ValueError, match="thresholds keys"):
        gate({"pred": screening_result(np.random.default_rng(0))})


def test_missing_gates_file_says_how_to_fit_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="fit_gates.json"):
        ScreeningGates.load(tmp_path / "gates.pt")
    gate = FeatureOODGated("pred", gates_file=tmp_path / "gates.pt")  # a config builds before the file exists
    with pytest.raises(FileNotFoundError, match="fit_gates.json"):
        gate({"pred": screening_result(np.random.default_rng(0))})
    with pytest.raises(ValueError, match="gates_file"):
        AnatomyGated("pred")({"pred": screening_result(np.random.default_rng(0))})


def test_wrong_version_is_refused(gates, tmp_path):
    state = torch.load(gates.save(tmp_path / "gates.pt"), weights_only=True)
    torch.save({**state, "version": 99}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="version"):
        ScreeningGates.load(tmp_path / "old.pt")


# -- verdicts ---------------------------------------------------------------------------------------------------------
def test_in_distribution_result_passes_every_gate(gates_file):
    rng = np.random.default_rng(10)
    res = screening_result(rng)
    out = all_gates(gates_file)({"image": radiograph(), "pred": res})["pred"]
    assert [g["gate"] for g in out["gates"]] == list(GATE_FLAGS)
    assert [g["flag"] for g in out["gates"]] == list(GATE_FLAGS.values())
    assert all(g["passed"] is True for g in out["gates"]) and failed_gates(out) == []
    g = by_gate(out)
    assert g["input"]["message"] == "plausible radiograph" and g["anatomy"]["message"] == "hand layout"
    assert g["anatomy"]["layout_score"] <= THRESHOLDS["layout"] and g["anatomy"]["fragmentation"] == 0.0
    assert g["anatomy"]["layout_threshold"] == THRESHOLDS["layout"]
    assert g["features"]["feature_score"] <= THRESHOLDS["features"]
    assert g["features"]["feature_threshold"] == THRESHOLDS["features"]
    assert_allclose(g["features"]["energy"], float(np.mean(energy_score(res["logits"]))), atol=1e-4)
    assert "gates" not in res  # the input result is not modified in place


def test_scattered_layout_fails_the_anatomy_gate(gates_file):
    rng = np.random.default_rng(11)
    out = all_gates(gates_file)({"image": radiograph(), "pred": screening_result(rng, scattered_labels(rng))})["pred"]
    g = by_gate(out)
    assert g["input"]["passed"] is True and g["features"]["passed"] is True
    assert g["anatomy"]["passed"] is False and g["anatomy"]["flag"] == "implausible_anatomy"
    assert "not laid out like a hand" in g["anatomy"]["message"] and "layout score" in g["anatomy"]["message"]
    assert g["anatomy"]["layout_score"] > THRESHOLDS["layout"]
    assert failed_gates(out) == [g["anatomy"]]


def test_fragmented_bone_fails_the_anatomy_gate(gates_file):
    rng = np.random.default_rng(12)
    labels = hand_labels(rng)
    rows, cols = np.nonzero(labels == BONE_LABELS["radius"])
    cut = int(np.median(rows))
    labels[cut - 1:cut + 2][labels[cut - 1:cut + 2] == BONE_LABELS["radius"]] = 0  # a gap across the radius
    rows2 = np.nonzero(labels == BONE_LABELS["radius"])[0]
    assert abs(np.ptp(rows2) - np.ptp(rows)) <= 1  # the radius is still as long: the cut is across its axis
    out = AnatomyGated("pred", gates_file=gates_file)({"pred": screening_result(rng, labels)})["pred"]
    g = by_gate(out)["anatomy"]
    assert g["passed"] is False and "fragmented bone masks (radius" in g["message"]
    assert g["fragmentation"] > THRESHOLDS["fragmentation"]


def test_shifted_features_fail_the_feature_gate(gates_file):
    rng = np.random.default_rng(13)
    out = all_gates(gates_file)({"image": radiograph(), "pred": screening_result(rng, shift=4.0)})["pred"]
    g = by_gate(out)
    assert g["input"]["passed"] is True and g["anatomy"]["passed"] is True
    assert g["features"]["passed"] is False and g["features"]["flag"] == "out_of_distribution"
    assert "unlike the training radiographs" in g["features"]["message"]
    assert g["features"]["feature_score"] > THRESHOLDS["features"]


def test_no_bones_fails_anatomy_and_features(gates_file):
    res = screening_result(np.random.default_rng(14), np.zeros((SIZE, SIZE), np.uint8))
    assert res["bones_found"] == [] and res["bone_features"] is None
    out = all_gates(gates_file)({"image": radiograph(), "pred": res})["pred"]
    g = by_gate(out)
    assert g["anatomy"]["passed"] is False and "only 0 bones found: too few" in g["anatomy"]["message"]
    assert g["anatomy"]["layout_score"] is None and g["anatomy"]["fragmentation"] is None  # inf -> None
    assert g["features"]["passed"] is False and "no bone patch" in g["features"]["message"]
    assert g["features"]["feature_score"] is None
    # features computed but no bone kept (an empty (0, F) array) is the same verdict
    res = {**res, "bone_features": np.zeros((0, FEATURE_DIM), np.float32)}
    assert by_gate(FeatureOODGated("pred", gates_file=gates_file)({"pred": res})["pred"])["features"]["passed"] is False


def test_three_bones_are_too_few_for_a_layout(gates_file):
    rng = np.random.default_rng(15)
    labels = hand_labels(rng)
    labels[np.isin(labels, [BONE_LABELS[b] for b in ("M2", "M3", "M4", "M5")])] = 0
    g = by_gate(AnatomyGated("pred", gates_file=gates_file)({"pred": screening_result(rng, labels)})["pred"])
    assert g["anatomy"]["passed"] is False and "only 3 bones found" in g["anatomy"]["message"]


@pytest.mark.parametrize("meta, reason", [({"chroma": 0.1}, "colour image"), ({"modality": "CT"}, "modality CT")])
def test_input_gate_single_item(gates_file, meta, reason):
    rng = np.random.default_rng(16)
    out = all_gates(gates_file)({"image": radiograph(meta), "pred": screening_result(rng)})["pred"]
    g = by_gate(out)
    assert g["input"]["passed"] is False and g["input"]["flag"] == "implausible_input"
    assert reason in g["input"]["message"]
    assert g["anatomy"]["passed"] is True and g["features"]["passed"] is True
    ok = InputPlausibilityGated("pred")({"image": radiograph(), "pred": screening_result(rng)})["pred"]
    assert by_gate(ok)["input"]["passed"] is True


@pytest.mark.parametrize("bad", [0, 1])
@pytest.mark.parametrize("meta, reason", [({"chroma": 0.1}, "colour image"), ({"modality": "CT"}, "modality CT")])
def test_input_gate_batch_gives_each_result_its_own_verdict(gates_file, bad, meta, reason):
    rng = np.random.default_rng(17)
    items = [{"image": radiograph(meta if i == bad else None, seed=i)} for i in range(2)]
    batch = list_data_collate(items)["image"]
    assert isinstance(batch, MetaTensor) and batch.is_batch and tuple(batch.shape) == (2, 1, 160, 128)
    preds = [screening_result(rng), screening_result(rng)]
    out = all_gates(gates_file)({"image": batch, "pred": preds})["pred"]
    assert isinstance(out, list) and len(out) == 2
    for i, r in enumerate(out):
        g = by_gate(r)
        assert g["input"]["passed"] is (i != bad), (i, g["input"])
        assert (reason in g["input"]["message"]) is (i == bad)
        assert g["anatomy"]["passed"] is True and g["features"]["passed"] is True


def test_input_gate_needs_the_image():
    with pytest.raises(KeyError, match="image"):
        InputPlausibilityGated("pred")({"pred": screening_result(np.random.default_rng(0))})


# -- decision and QC after the gates ----------------------------------------------------------------------------------
def post(gates_file, **kw) -> Compose:
    return Compose([all_gates(gates_file, **kw), ScreeningDecisiond("pred"), ScreeningQCd("pred")])


def test_failed_gate_refuses_the_decision_and_keeps_the_eq10_probability(gates_file):
    rng = np.random.default_rng(20)
    res = screening_result(rng, scattered_labels(rng))
    out = post(gates_file)({"image": radiograph({"modality": "CT"}), "pred": res})["pred"]
    assert out["decision"] == -1 and math.isnan(out["probability"])
    assert_allclose(out["probability_ungated"], res["class_probabilities"][:, 1].mean(), rtol=1e-6)
    assert out["decision_name"].startswith("no decision: ")
    failed = failed_gates(out)
    assert [g["gate"] for g in failed] == ["input", "anatomy"]
    assert out["decision_name"] == "no decision: " + "; ".join(g["message"] for g in failed)
    assert all(g["message"] in out["decision_name"] for g in failed)


def test_passed_gates_keep_the_usual_decision(gates_file):
    rng = np.random.default_rng(21)
    res = screening_result(rng)
    out = post(gates_file)({"image": radiograph(), "pred": res})["pred"]
    plain = Compose([ScreeningDecisiond("pred"), ScreeningQCd("pred")])({"pred": res})["pred"]
    p1 = float(res["class_probabilities"][:, 1].mean())
    assert_allclose(out["probability"], p1, rtol=1e-6)
    assert out["decision"] == int(p1 >= 0.5) == plain["decision"]
    assert out["decision_name"] == plain["decision_name"] in ("osteoporosis", "no osteoporosis")
    assert "probability_ungated" not in out and out["qc_flags"] == plain["qc_flags"] == []


def test_qc_flags_append_the_gate_flags_in_gate_order(gates_file):
    rng = np.random.default_rng(22)
    res = screening_result(rng, scattered_labels(rng), shift=4.0, confidence=0.5)
    out = post(gates_file)({"image": radiograph({"chroma": 0.1}), "pred": res})["pred"]
    classic = screening_qc_flags(res["bones_found"], 0.5, res["bone_area_fraction"], expected_bones=len(BONES))
    assert classic == ["low_segmentation_confidence"]
    assert out["qc_flags"] == [*classic, "implausible_input", "implausible_anatomy", "out_of_distribution"]
    assert len(out["qc_messages"]) == 4
    assert out["qc_messages"][1:] == [g["message"] for g in out["gates"]]

    # no bone: the classic flags first, then anatomy's and features' (input passed)
    res = screening_result(rng, np.zeros((SIZE, SIZE), np.uint8), area=0.0)
    out = post(gates_file)({"image": radiograph(), "pred": res})["pred"]
    classic = screening_qc_flags([], 0.95, 0.0, expected_bones=len(BONES))
    assert out["qc_flags"] == [*classic, "implausible_anatomy", "out_of_distribution"]
    assert out["decision"] == -1 and out["decision_name"].startswith("no decision: only 0 bones found")
    assert "probability_ungated" not in out and math.isnan(out["probability"])


def test_batch_decisions_follow_each_results_gates(gates_file):
    rng = np.random.default_rng(23)
    batch = list_data_collate([{"image": radiograph(seed=0)}, {"image": radiograph({"modality": "CT"}, seed=1)}])
    preds = [screening_result(rng), screening_result(rng)]
    out = post(gates_file)({"image": batch["image"], "pred": preds})["pred"]
    assert out[0]["decision"] in (0, 1) and "implausible_input" not in out[0]["qc_flags"]
    assert out[1]["decision"] == -1 and out[1]["qc_flags"][-1] == "implausible_input"
    assert "modality CT" in out[1]["decision_name"]


def test_disabled_gates_record_none_and_never_block(tmp_path):
    rng = np.random.default_rng(24)
    res = screening_result(rng, scattered_labels(rng), shift=4.0)
    # disabled learned gates do not even read their (missing) file
    out = post(tmp_path / "missing.pt", enabled=False)({"image": radiograph({"modality": "CT"}), "pred": res})["pred"]
    assert [(g["gate"], g["passed"], g["message"]) for g in out["gates"]] == [
        (name, None, "gate disabled") for name in GATE_FLAGS]
    assert failed_gates(out) == [] and out["decision"] in (0, 1) and "probability_ungated" not in out
    assert_allclose(out["probability"], res["class_probabilities"][:, 1].mean(), rtol=1e-6)
    assert not set(out["qc_flags"]) & set(GATE_FLAGS.values())


def test_threshold_override_changes_the_verdict(gates_file):
    rng = np.random.default_rng(25)
    hand, shifted = screening_result(rng), screening_result(rng, shift=4.0)
    assert by_gate(AnatomyGated("pred", gates_file=gates_file)({"pred": hand})["pred"])["anatomy"]["passed"] is True
    strict = AnatomyGated("pred", gates_file=gates_file, thresholds={"layout": -50.0})({"pred": hand})["pred"]
    g = by_gate(strict)["anatomy"]
    assert g["passed"] is False and g["layout_threshold"] == -50.0 and "not laid out like a hand" in g["message"]
    lax = FeatureOODGated("pred", gates_file=gates_file, thresholds={"features": 10.0})({"pred": shifted})["pred"]
    assert by_gate(lax)["features"]["passed"] is True
    out = post(gates_file, thresholds={"layout": -50.0})({"image": radiograph(), "pred": hand})["pred"]
    assert out["decision"] == -1 and out["qc_flags"] == ["implausible_anatomy"]


def test_gate_records_are_strict_json(gates_file):
    rng = np.random.default_rng(26)
    results = [screening_result(rng), screening_result(rng, scattered_labels(rng), shift=4.0),
               screening_result(rng, np.zeros((SIZE, SIZE), np.uint8))]
    out = post(gates_file)({"image": list_data_collate([{"image": radiograph(seed=i)} for i in range(3)])["image"],
                            "pred": results})["pred"]
    for r in out:
        text = json.dumps(r["gates"], allow_nan=False)
        assert json.loads(text) == r["gates"]
        assert json.dumps({k: r[k] for k in ("decision", "decision_name", "qc_flags", "qc_messages")}, allow_nan=False)
