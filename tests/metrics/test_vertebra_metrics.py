"""Vertebral CT evaluation: any-positive patient rule on hand cases, paired t-test and exact McNemar against scipy,
BMD agreement against numpy/scipy, per-site tables against ``screening_metrics`` on the filtered records,
specificity against scikit-learn and the percent view."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import confusion_matrix

from monai_osteo.metrics import (
    aggregate_patients,
    bmd_agreement,
    paired_tests,
    paper_metric_percent,
    screening_metrics,
    site_metrics,
)


def _records():
    return [
        # p1: one positive vertebra among negatives -> the patient is positive; prob is the max
        {"patient_id": "p1", "label": 0, "prob": 0.2, "site": "A"},
        {"patient_id": "p1", "label": 1, "prob": 0.7, "site": "A"},
        {"patient_id": "p1", "label": 0, "prob": 0.1, "site": "A"},
        # p2: all negative; one vertebra predicted positive -> predicted positive (false positive patient)
        {"patient_id": "p2", "label": 0, "prob": 0.3, "site": "B"},
        {"patient_id": "p2", "label": 0, "prob": 0.55, "site": "B"},
        # p0: negative, predicted negative
        {"patient_id": "p0", "label": 0, "prob": 0.4, "site": "A"},
        {"patient_id": "p0", "label": 0, "prob": 0.05, "site": "A"},
        # p3: positive, missed
        {"patient_id": "p3", "label": 1, "prob": 0.45, "site": "B"},
    ]


def test_aggregate_patients_any_positive_hand_cases():
    out = aggregate_patients(_records())
    assert [p["patient_id"] for p in out] == ["p0", "p1", "p2", "p3"]  # sorted
    by = {p["patient_id"]: p for p in out}
    assert by["p1"] == {"patient_id": "p1", "site": "A", "label": 1, "prob": 0.7, "pred": 1, "n_vertebrae": 3}
    assert by["p2"] == {"patient_id": "p2", "site": "B", "label": 0, "prob": 0.55, "pred": 1, "n_vertebrae": 2}
    assert by["p0"] == {"patient_id": "p0", "site": "A", "label": 0, "prob": 0.4, "pred": 0, "n_vertebrae": 2}
    assert by["p3"] == {"patient_id": "p3", "site": "B", "label": 1, "prob": 0.45, "pred": 0, "n_vertebrae": 1}
    # pred is any(vertebra prob >= threshold), i.e. the patient prob thresholded
    assert [p["pred"] for p in aggregate_patients(_records(), threshold=0.6)] == [0, 1, 0, 0]
    for p in out:
        assert isinstance(p["label"], int) and isinstance(p["prob"], float)


def test_aggregate_patients_mean_rule_and_ids():
    by = {p["patient_id"]: p for p in aggregate_patients(_records(), rule="mean")}
    assert by["p1"]["label"] == 1 and by["p1"]["prob"] == pytest.approx(1.0 / 3) and by["p1"]["pred"] == 0
    assert by["p2"]["prob"] == pytest.approx(0.425) and by["p2"]["pred"] == 0
    # integer ids keep their type and numeric order; no site -> None
    recs = [{"patient_id": 10, "label": 0, "prob": 0.1}, {"patient_id": 2, "label": 1, "prob": 0.9}]
    out = aggregate_patients(recs)
    assert [p["patient_id"] for p in out] == [2, 10] and out[0]["site"] is None
    assert aggregate_patients([]) == []


def test_aggregate_patients_errors():
    mixed = [{"patient_id": "x", "label": 0, "prob": 0.1, "site": "A"},
             {"patient_id": "x", "label": 1, "prob": 0.9, "site": "B"}]
    with pytest.raises(ValueError, match="patient 'x' has records from several sites"):
        aggregate_patients(mixed)
    with pytest.raises(ValueError, match="rule must be one of"):
        aggregate_patients(_records(), rule="max")
    with pytest.raises(ValueError, match="label must be 0 or 1"):
        aggregate_patients([{"patient_id": "x", "label": 2, "prob": 0.1}])
    with pytest.raises(ValueError, match="must have 'patient_id', 'label' and 'prob'"):
        aggregate_patients([{"label": 1, "prob": 0.1}])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_tests_match_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(60) < 0.8
    b = rng.random(60) < 0.65
    res = paired_tests(a, b)
    ref = stats.ttest_rel(a.astype(int), b.astype(int))
    assert res["t_stat"] == pytest.approx(ref.statistic, rel=1e-12)
    assert res["t_pvalue"] == pytest.approx(ref.pvalue, rel=1e-12)
    n_b, n_c = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert (res["mcnemar_b"], res["mcnemar_c"]) == (n_b, n_c)
    assert res["mcnemar_pvalue"] == pytest.approx(stats.binomtest(n_b, n_b + n_c, 0.5).pvalue, rel=1e-12)
    assert (res["n"], res["acc_a"], res["acc_b"]) == (60, pytest.approx(a.mean()), pytest.approx(b.mean()))


def test_paired_tests_hand_case_and_degenerate():
    a = [1, 1, 1, 0, 1, 0, 1, 1]
    b = [1, 0, 0, 0, 1, 1, 0, 1]
    res = paired_tests(a, b)
    assert (res["mcnemar_b"], res["mcnemar_c"]) == (3, 1)  # items 1, 2, 6 vs item 5
    assert res["mcnemar_pvalue"] == pytest.approx(2 * (1 + 4) / 16)  # two-sided exact binomial, n=4, k=3
    assert (res["acc_a"], res["acc_b"]) == (0.75, 0.5)

    same = paired_tests([1, 0, 1], [1, 0, 1])
    assert same["t_pvalue"] == 1.0 and same["t_stat"] == 0.0 and same["mcnemar_pvalue"] == 1.0
    assert (same["mcnemar_b"], same["mcnemar_c"]) == (0, 0)
    always = paired_tests([1, 1, 1], [0, 0, 0])
    assert always["t_pvalue"] == 0.0 and always["t_stat"] == math.inf
    assert paired_tests([0, 0], [1, 1])["t_stat"] == -math.inf
    single = paired_tests([1], [0])
    assert math.isnan(single["t_pvalue"]) and single["mcnemar_pvalue"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="of one length"):
        paired_tests([1, 0], [1])
    with pytest.raises(ValueError, match="correct_b must be a 1-D sequence of 0/1"):
        paired_tests([1, 0], [1, 2])


def test_bmd_agreement_matches_numpy_scipy():
    rng = np.random.default_rng(3)
    t = rng.normal(0.9, 0.15, 40)
    p = t + rng.normal(0, 0.05, 40)
    g = np.array(["Hologic", "GE"] * 20)
    t_nan = t.copy()
    t_nan[[0, 7]] = np.nan  # missing DXA values are skipped
    out = bmd_agreement(t_nan, p, groups=g.tolist())
    keep = np.isfinite(t_nan)
    assert list(out) == ["pooled", "GE", "Hologic"]
    assert out["pooled"]["n"] == 38
    assert out["pooled"]["mae"] == pytest.approx(np.mean(np.abs(p[keep] - t[keep])), rel=1e-12)
    assert out["pooled"]["pearson_r"] == pytest.approx(stats.pearsonr(t[keep], p[keep]).statistic, rel=1e-12)
    for name in ("GE", "Hologic"):
        sel = keep & (g == name)
        assert out[name]["n"] == int(sel.sum())
        assert out[name]["mae"] == pytest.approx(np.mean(np.abs(p[sel] - t[sel])), rel=1e-12)
        assert out[name]["pearson_r"] == pytest.approx(stats.pearsonr(t[sel], p[sel]).statistic, rel=1e-12)


def test_bmd_agreement_degenerate():
    out = bmd_agreement([1.0, 2.0], [1.5, 2.5])
    assert out["pooled"]["mae"] == pytest.approx(0.5) and math.isnan(out["pooled"]["pearson_r"])  # < 3 items
    assert math.isnan(bmd_agreement([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])["pooled"]["pearson_r"])  # constant
    empty = bmd_agreement([np.nan], [1.0])["pooled"]
    assert empty["n"] == 0 and math.isnan(empty["mae"])
    with pytest.raises(ValueError, match="one length"):
        bmd_agreement([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="groups must give one name per item"):
        bmd_agreement([1.0, 2.0], [1.0, 2.0], groups=["a"])


def _site_records(seed=4):
    rng = np.random.default_rng(seed)
    recs = []
    for site, n_pat in (("A", 12), ("B", 8), ("D", 6)):
        for i in range(n_pat):
            for _ in range(rng.integers(1, 4)):
                y = int(rng.random() < 0.35)
                recs.append({"patient_id": f"{site}{i}", "site": site, "label": y,
                             "prob": float(np.clip(0.4 * y + rng.uniform(0, 0.6), 0, 1))})
    # site C: one class only (no positive) -> AUC NaN, no crash
    recs += [{"patient_id": f"C{i}", "site": "C", "label": 0, "prob": float(p)} for i, p in enumerate([0.1, 0.6, 0.3])]
    return recs


def test_site_metrics_match_screening_metrics_on_filtered_lists():
    recs = _site_records()
    out = site_metrics(recs, threshold=0.5, sites_order=["A", "B", "C", "D"])
    assert list(out) == ["vertebra", "patient"]
    assert list(out["vertebra"]) == ["A", "B", "C", "D", "pooled"] == list(out["patient"])
    patients = aggregate_patients(recs)
    for site in "ABCD":
        vs = [r for r in recs if r["site"] == site]
        assert out["vertebra"][site] == pytest.approx(
            screening_metrics([r["label"] for r in vs], [r["prob"] for r in vs]), nan_ok=True)
        ps = [p for p in patients if p["site"] == site]
        assert out["patient"][site] == pytest.approx(
            screening_metrics([p["label"] for p in ps], [p["prob"] for p in ps]), nan_ok=True)
    assert out["vertebra"]["pooled"] == pytest.approx(
        screening_metrics([r["label"] for r in recs], [r["prob"] for r in recs]), nan_ok=True)
    assert math.isnan(out["vertebra"]["C"]["auc"]) and out["vertebra"]["C"]["specificity"] == pytest.approx(2 / 3)
    assert out["patient"]["pooled"]["n"] == 12 + 8 + 6 + 3
    # patient-level specificity against scikit-learn on the any-positive patients
    y = [p["label"] for p in patients]
    pred = [p["pred"] for p in patients]
    tn, fp, _, _ = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert out["patient"]["pooled"]["specificity"] == pytest.approx(tn / (tn + fp))


def test_site_metrics_order_and_errors():
    recs = _site_records()
    assert list(site_metrics(recs)["vertebra"]) == ["A", "B", "C", "D", "pooled"]  # sorted by default
    assert list(site_metrics(recs, sites_order=["D", "C", "B", "A", "E"])["patient"]) == ["D", "C", "B", "A", "pooled"]
    with pytest.raises(ValueError, match=r"does not list the sites \['D'\]"):
        site_metrics(recs, sites_order=["A", "B", "C"])
    with pytest.raises(ValueError, match="must have a 'site'"):
        site_metrics([{"patient_id": "x", "label": 1, "prob": 0.3}])


def test_paper_metric_percent():
    m = screening_metrics([0, 0, 1, 1, 1], [0.1, 0.7, 0.8, 0.9, 0.2])
    pct = paper_metric_percent(m)
    y, pred = [0, 0, 1, 1, 1], [0, 1, 1, 1, 0]
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert pct == pytest.approx({"ACC": 60.0, "SEN": 100 * tp / (tp + fn), "SPE": 100 * tn / (tn + fp),
                                 "F1": 100 * 2 * tp / (2 * tp + fp + fn)})
    with pytest.raises(ValueError, match="lacks"):
        paper_metric_percent({"accuracy": 1.0})
