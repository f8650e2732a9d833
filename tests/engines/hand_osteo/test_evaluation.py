"""ScreeningEvaluation side by side with the 2MCI baseline on the same subjects, and the paired bootstrap of the
AUC difference (checked against sklearn on explicitly resampled subjects)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from monai_osteo.data.readers.patches import save_bone_patch
from monai_osteo.engines.hand_osteo import ScreeningEvaluation, cortical_index_baseline, paired_auc_difference
from monai_osteo.io import atomic_write_json
from monai_osteo.metrics import screening_metrics
from tests.utils import assert_allclose

PATCH = 8


def _classifier() -> torch.nn.Module:
    """patch -> logits (-2 m, 2 m) of its mean intensity m: a fixed, monotone stand-in for BoneClassifier."""
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1, 2))
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[-2.0], [2.0]]))
        net[2].bias.zero_()
    return net


def _fake_run(root: Path, datalist: Path, skip: int = 0, flip: bool = False, seed: int = 0) -> Path:
    """A finished train.json output: run.json, a patch cache of two bones per test subject and the classifier.

    ``skip`` leaves the first test subjects out (the run did not score them); ``flip`` inverts their labels."""
    rng = np.random.default_rng(seed)
    patches, index = root / "patches", []
    for r in json.loads(datalist.read_text())["test"][skip:]:
        for bone in ("M2", "M3"):
            name = f"patches/{r['subject_id']}_{bone}.npy"
            (patches / "patches").mkdir(parents=True, exist_ok=True)
            save_bone_patch(patches / name, np.full((1, PATCH, PATCH), rng.uniform(0.2, 0.8)))
            index.append({"image_id": r["subject_id"], "subject_id": r["subject_id"], "split": "test", "set": "test",
                          "label": 1 - r["label"] if flip else r["label"], "patch": name, "bone": bone,
                          "role": ["probe"]})
    atomic_write_json(patches / "index.json", {"mode": "bones", "patches": index})
    torch.save(_classifier().state_dict(), root / "model.pt")
    atomic_write_json(root / "run.json", {"classifier": str(root / "model.pt"), "patches": str(patches),
                                          "probe_spatial_size": PATCH, "patch_mode": "bones", "ssl": None})
    return root


def _labels_scores(seed: int, n: int = 40):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n // 3, int), np.zeros(n - n // 3, int)]
    a = np.round(y * 0.8 + rng.normal(0, 0.6, n), 1)  # rounded: ties within and across classes
    b = np.round(y * 0.3 + rng.normal(0, 0.6, n), 1)
    return y, a, b


@pytest.mark.parametrize("seed", [0, 1])
def test_paired_auc_difference_matches_sklearn_on_resampled_subjects(seed):
    y, a, b = _labels_scores(seed)
    res = paired_auc_difference(y, a, b, resamples=200, seed=seed)
    assert_allclose(res["difference"], roc_auc_score(y, a) - roc_auc_score(y, b), atol=1e-12)
    # oracle: each resample's subjects drawn explicitly (the same multinomial draw), AUCs by sklearn
    counts = np.random.default_rng(seed).multinomial(len(y), np.full(len(y), 1.0 / len(y)), size=200)
    diffs = []
    for c in counts:
        idx = np.repeat(np.arange(len(y)), c)
        if len(np.unique(y[idx])) == 2:
            diffs.append(roc_auc_score(y[idx], a[idx]) - roc_auc_score(y[idx], b[idx]))
    assert res["valid"] == len(diffs) and res["resamples"] == 200 and res["seed"] == seed
    assert_allclose(res["ci95"], np.percentile(diffs, [2.5, 97.5]), atol=1e-12)


def test_paired_auc_difference_invariants():
    y, a, b = _labels_scores(2)
    res = paired_auc_difference(y, a, b)
    low, high = res["ci95"]
    assert low <= res["difference"] <= high and res["resamples"] == 1000 and res["seed"] == 0
    assert paired_auc_difference(y, a, b) == res  # seeded: reproducible
    swapped = paired_auc_difference(y, b, a)
    assert_allclose([swapped["difference"], *swapped["ci95"]], [-res["difference"], -high, -low], atol=1e-12)
    same = paired_auc_difference(y, a, a)
    assert same["difference"] == 0.0 and same["ci95"] == [0.0, 0.0]
    # a strictly increasing transform of the scores changes no AUC
    assert paired_auc_difference(y, np.exp(a), 3 * b - 1) == res
    one_class = paired_auc_difference(np.ones(5, int), np.arange(5.0), np.arange(5.0))
    assert math.isnan(one_class["difference"]) and one_class["valid"] == 0
    with pytest.raises(ValueError, match="one length"):
        paired_auc_difference(y, a[:-1], b)


def test_evaluation_with_the_baseline_on_the_same_subjects(cohort, tmp_path, caplog):
    runs = [_fake_run(tmp_path / f"seed{s}" / "run", cohort, skip=1, seed=s) for s in (0, 1)]
    with caplog.at_level(logging.INFO, logger="monai_osteo.hand_osteo"):
        result = ScreeningEvaluation(runs, tmp_path / "eval", _classifier(), datalist=cohort).run()
    alone = cortical_index_baseline(cohort, "test")
    base = result["baseline"]
    common = list(alone["predictions"])[1:]  # the runs skipped the first test subject
    assert base["n"] == len(common) == result["subjects_per_run"] >= 4
    assert base["predictions"] == {k: alone["predictions"][k] for k in common}
    y = [alone["labels"][k] for k in common]
    assert base["metrics"] == screening_metrics(y, list(base["predictions"].values()), alone["threshold"])
    assert math.isfinite(base["metrics"]["auc"]) and base["threshold"] == alone["threshold"]
    predictions = json.loads((tmp_path / "eval/predictions.json").read_text())
    for name, d in base["auc_difference"]["runs"].items():
        assert base["runs"][name] == result["runs"][name]  # the runs scored exactly these subjects
        p = {s["subject_id"]: s["probability"] for s in predictions if s["run"] == name}
        assert_allclose(d["difference"], roc_auc_score(y, [p[k] for k in common]) - base["metrics"]["auc"],
                        atol=1e-12)
        assert d["ci95"][0] <= d["difference"] <= d["ci95"][1] and d["resamples"] == 1000 and d["seed"] == 0
    mean_auc = np.mean([m["auc"] for m in result["runs"].values()])
    assert_allclose(base["auc_difference"]["mean_over_runs"], mean_auc - base["metrics"]["auc"], atol=1e-12)
    written = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert written["baseline"]["predictions"] == base["predictions"]
    assert set(written["versions"]) == {"python", "torch", "monai", "lightly", "numpy", "monai_osteo"}
    md = (tmp_path / "eval/metrics.md").read_text()
    assert "Classical baseline on the same subjects" in md and "| 2MCI baseline |" in md and "95% CI" in md
    assert md.count("| seed0/run |") == 3 and md.count("| seed1/run |") == 3  # deep table, same subjects, ΔAUC
    assert (tmp_path / "eval/roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"2MCI baseline {base['metrics']['auc']:.3f} on the same {len(common)} subjects" in caplog.text


def test_evaluation_without_masks_skips_the_baseline_with_a_message(cohort, tmp_path):
    raw = json.loads(cohort.read_text())
    for key in ("training", "validation", "test"):
        for r in raw[key]:
            r.pop("masks")
            r["image"] = str(cohort.parent / r["image"])
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps(raw))
    run = _fake_run(tmp_path / "run", cohort)
    result = ScreeningEvaluation(run, tmp_path / "eval", _classifier(), datalist=datalist).run()
    assert "masks" in result["baseline"]["skipped"] and "auc" in result["runs"]["run"]
    md = (tmp_path / "eval/metrics.md").read_text()
    assert "Classical baseline on the same subjects: skipped" in md and "| 2MCI baseline |" not in md


def test_evaluation_refuses_a_datalist_whose_labels_differ_from_the_runs(cohort, tmp_path):
    run = _fake_run(tmp_path / "run", cohort, flip=True)
    result = ScreeningEvaluation(run, tmp_path / "eval", _classifier(), datalist=cohort).run()
    assert "labels" in result["baseline"]["skipped"] and "predictions" not in result["baseline"]


def test_evaluation_without_datalist_has_no_baseline(cohort, tmp_path):
    run = _fake_run(tmp_path / "run", cohort)
    result = ScreeningEvaluation(run, tmp_path / "eval", _classifier()).run()
    assert "baseline" not in result and "Classical baseline" not in (tmp_path / "eval/metrics.md").read_text()


def test_evaluation_applies_the_runs_patch_normalization(cohort, tmp_path):
    """run.json's ``patch_normalization`` reaches the patches: a constant bone patch standardises to 0, so the
    mean-intensity classifier gives every subject probability 0.5; without it, the display values order them."""
    run = _fake_run(tmp_path / "run", cohort)
    raw = ScreeningEvaluation(run, tmp_path / "eval_raw", _classifier()).run()
    manifest = json.loads((run / "run.json").read_text())
    atomic_write_json(run / "run.json", {**manifest, "patch_normalization": "bone_zscore"})
    ScreeningEvaluation(run, tmp_path / "eval_z", _classifier()).run()
    z = json.loads((tmp_path / "eval_z" / "predictions.json").read_text())
    assert_allclose([s["probability"] for s in z], 0.5, atol=1e-6, rtol=0)
    r = json.loads((tmp_path / "eval_raw" / "predictions.json").read_text())
    assert np.ptp([s["probability"] for s in r]) > 0.1 and raw["runs"]
