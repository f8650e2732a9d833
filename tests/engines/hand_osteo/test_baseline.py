"""The classical 2MCI baseline: scores exactly the split's subjects, agrees with its own building blocks
(logistic model monotone in the index, sklearn metrics, macro-F1 threshold) and degrades gracefully."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from monai_osteo.engines.hand_osteo import cortical_index_baseline
from monai_osteo.metrics import best_threshold, screening_metrics


def _absolute(datalist: Path) -> dict:
    """The datalist with absolute paths, so that a modified copy can live in another folder."""
    raw = json.loads(datalist.read_text())
    for key in ("training", "validation", "test"):
        for r in raw[key]:
            r["image"] = str(datalist.parent / r["image"])
            r["masks"] = [str(datalist.parent / m) for m in r["masks"]]
    return raw


def _write(raw: dict, path: Path) -> Path:
    path.write_text(json.dumps(raw))
    return path


def test_baseline_scores_the_split_subjects(cohort):
    raw = json.loads(cohort.read_text())
    res = cortical_index_baseline(cohort, "test")
    test_ids = [r["subject_id"] for r in raw["test"]]
    assert "skipped" not in res and res["failed_files"] == [] and res["unmeasurable"] == []
    assert list(res["predictions"]) == test_ids and res["n"] == len(test_ids)
    assert res["labels"] == {r["subject_id"]: r["label"] for r in raw["test"]}
    assert set(res["splits"]) == {"training", "validation", "test"}
    y, p = list(res["labels"].values()), list(res["predictions"].values())
    assert all(0.0 < v < 1.0 for v in p)
    assert math.isfinite(res["metrics"]["auc"]) and res["metrics"]["auc"] == roc_auc_score(y, p)
    assert res["metrics"] == screening_metrics(y, p, res["threshold"])
    # the threshold is the macro-F1 optimum of training + validation
    fit = [res["splits"][k] for k in ("training", "validation")]
    assert res["threshold"] == best_threshold([v for s in fit for v in s["labels"].values()],
                                              [v for s in fit for v in s["predictions"].values()])
    # one-feature logistic model: the probabilities are a monotone function of the cortical index
    ci = np.array([v for s in res["splits"].values() for v in s["cortical_index"].values()])
    prob = np.array([v for s in res["splits"].values() for v in s["predictions"].values()])
    order = np.argsort(ci, kind="stable")
    steps = np.diff(prob[order])
    assert (steps <= 1e-12).all() or (steps >= -1e-12).all()


def test_records_without_masks_skip_the_baseline(cohort, tmp_path, caplog):
    raw = _absolute(cohort)
    for key in ("training", "validation", "test"):
        for r in raw[key]:
            del r["masks"]
    with caplog.at_level(logging.WARNING, logger="monai_osteo.hand_osteo"):
        res = cortical_index_baseline(_write(raw, tmp_path / "no_masks.json"), "test")
    assert set(res) == {"method", "split", "skipped"} and "masks" in res["skipped"]
    assert "2MCI baseline skipped" in caplog.text and "masks" in caplog.text


def test_missing_split_skips_the_baseline(cohort, tmp_path):
    raw = _absolute(cohort)
    raw["validation"] = []
    res = cortical_index_baseline(_write(raw, tmp_path / "no_validation.json"), "test")
    assert "validation" in res["skipped"]


def test_unmeasurable_and_unreadable_subjects_are_listed_and_the_rest_finish(cohort, tmp_path, caplog):
    raw = _absolute(cohort)
    no_m2, bad_file, no_masks = (r["subject_id"] for r in raw["test"][:3])
    masks = []
    for j, m in enumerate(raw["test"][0]["masks"]):  # annotators' masks with M2 (label 4) erased
        arr = np.asarray(Image.open(m))
        masks.append(str(tmp_path / f"no_m2_{j}.png"))
        Image.fromarray(np.where(arr == 4, 0, arr).astype(arr.dtype)).save(masks[-1])
    raw["test"][0]["masks"] = masks
    raw["test"][1]["image"] = str(tmp_path / "missing.png")
    del raw["test"][2]["masks"]
    with caplog.at_level(logging.WARNING, logger="monai_osteo.hand_osteo"):
        res = cortical_index_baseline(_write(raw, tmp_path / "datalist.json"), "test")
    assert res["failed_files"] == [str(tmp_path / "missing.png")]
    assert res["unmeasurable"] == [no_m2, no_masks]
    scored = [r["subject_id"] for r in raw["test"][3:]]
    assert list(res["predictions"]) == scored and res["n"] == len(scored)
    assert no_m2 in caplog.text and "missing.png" in caplog.text and "no annotator 'masks'" in caplog.text
