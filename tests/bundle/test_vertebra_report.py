"""vertebra_osteo report: per-row tables from the test stages' files, paired comparisons aligned by vertebra, the
paper's orderings, and the summary over seeds (synthetic predictions with known answers)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from monai_osteo.bundle.vertebra_report import seeds_markdown, summarise_seeds, write_report
from monai_osteo.handlers.vertebra_predictions import PREDICTION_COLUMNS
from monai_osteo.metrics import site_metrics


def _row(folder, probs, labels, sites, patients):
    folder.mkdir(parents=True)
    rows = []
    for i, (p, y, s, pt) in enumerate(zip(probs, labels, sites, patients)):
        r = dict.fromkeys(PREDICTION_COLUMNS, "")
        r.update({"uid": f"v{i}", "patient": pt, "site": s, "dxa_device": "Hologic", "level": "L1", "label": y,
                  "prob": p, "pred": int(p >= 0.5), "bmd": 0.9, "bmd_pred": 0.8, "t_score": -1.0, "t_pred": -1.5,
                  "position": 13, "position_pred": 13})
        rows.append(r)
    with open(folder / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    recs = [{"patient_id": pt, "site": s, "label": y, "prob": p} for p, y, s, pt in zip(probs, labels, sites, patients)]
    metrics = site_metrics(recs)
    metrics["bmd"] = {"pooled": {"n": len(rows), "mae": 0.1, "pearson_r": 0.5}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def run(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    labels = [int(i % 3 == 0) for i in range(n)]
    sites = ["A" if i < 20 else "B" for i in range(n)]
    patients = [f"p{i // 2}" for i in range(n)]
    good = [float(np.clip(0.8 * y + 0.1 + 0.05 * rng.standard_normal(), 0, 1)) for y in labels]  # all correct
    bad = [0.3] * n  # predicts negative everywhere
    _row(tmp_path / "tp_swav_unified_moe" / "test", good, labels, sites, patients)
    _row(tmp_path / "tp_swav_unified" / "test", bad, labels, sites, patients)
    return tmp_path, labels


def test_write_report_tables_paired_tests_and_orderings(run):
    out, labels = run
    rows = [{"name": "tp_swav_unified"}, {"name": "tp_swav_unified_moe"}]
    summary = write_report(out, rows, out / "report", "tp_swav_unified_moe", ("A", "B", "C", "D"))
    moe, single = summary["rows"]["tp_swav_unified_moe"], summary["rows"]["tp_swav_unified"]
    assert moe["vertebra"]["pooled"]["f1"] == 1.0 and single["vertebra"]["pooled"]["f1"] == 0.0
    assert moe["mean_site_f1"]["vertebra"] == 1.0  # the mean over the sites present (A, B)
    t = summary["paired_vs_base"]["tp_swav_unified"]
    positives = sum(labels)
    assert t["n"] == len(labels) and t["mcnemar_b"] == positives and t["mcnemar_c"] == 0 and t["mcnemar_pvalue"] < 0.01
    o4 = [o for o in summary["orderings"] if o["ordering"].startswith("O4 MoE > single head (")][0]
    assert o4["holds"] and o4["better_f1"] == 1.0 and o4["worse_f1"] == 0.0
    md = (out / "report/results.md").read_text()
    assert "| tp_swav_unified_moe | 100.0 / 100.0 / 100.0 / 100.0 / 100.0 |" in md
    assert "| 83.0 / 67.6 / — / — |" in md  # the paper's F1 beside ours (sites C, D lost in the paper's text)
    assert (out / "report/roc.png").stat().st_size > 5_000


def test_write_report_names_a_missing_row(run):
    out, _ = run
    with pytest.raises(FileNotFoundError, match="scratch"):
        write_report(out, [{"name": "scratch"}], out / "report")


def test_summarise_seeds_counts_orderings(run):
    out, _ = run
    rows = [{"name": "tp_swav_unified"}, {"name": "tp_swav_unified_moe"}]
    rep = write_report(out, rows, out / "report")
    summary = summarise_seeds([rep, rep, rep])
    assert summary["seeds"] == 3
    f1 = summary["rows"]["tp_swav_unified_moe"]["vertebra_f1"]
    assert f1["mean"] == 1.0 and f1["std"] == 0.0 and f1["values"] == [1.0, 1.0, 1.0]
    o4 = [o for o in summary["orderings"] if o["ordering"].startswith("O4 MoE > single head (")][0]
    assert o4["f1"]["held_in"] == 3 and o4["f1"]["mean_diff"] == 1.0
    assert "| tp_swav_unified_moe | 100.0 ± 0.0 |" in seeds_markdown(summary)
