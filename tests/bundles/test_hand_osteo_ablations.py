"""The ablation table's ordering tests (bundles/hand_osteo/scripts/ablations.py): seed counts, mean ΔAUC, the paired
t-test over seeds (scipy) and the paired bootstrap over subjects, on runs whose scores are constructed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy.stats import ttest_rel
from sklearn.metrics import roc_auc_score

from tests.bundles.hand_osteo_tiny import BUNDLE

_spec = importlib.util.spec_from_file_location("hand_osteo_ablations", BUNDLE / "scripts" / "ablations.py")
ablations = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ablations)


def _run(labels: np.ndarray, scores: np.ndarray) -> dict:
    """A run's record as run_variant returns it: metrics + {subject: [label, probability]}."""
    return {"auc": float(roc_auc_score(labels, scores)), "f1": 0.5, "accuracy": 0.5,
            "subjects": {f"s{i}": [int(y), float(p)] for i, (y, p) in enumerate(zip(labels, scores))}}


def _pair(seed: int, noise_full: float, noise_variant: float, n: int = 60) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    y = (np.arange(n) < n // 3).astype(int)
    return (_run(y, y + rng.normal(0, noise_full, n)), _run(y, y + rng.normal(0, noise_variant, n)))


def test_a_clearly_better_full_method_holds_over_seeds_and_subjects():
    pairs = {str(s): _pair(s, 0.3, 2.0) for s in range(3)}
    full, variant = {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}
    t = ablations.ordering_tests(full, variant, resamples=200)
    d = [full[k]["auc"] - variant[k]["auc"] for k in sorted(full)]
    assert t["seeds"] == 3 and t["holds_in"] == 3
    assert t["delta_auc"] == pytest.approx(np.mean(d))
    assert t["t_test_p"] == pytest.approx(ttest_rel([full[k]["auc"] for k in sorted(full)],
                                                    [variant[k]["auc"] for k in sorted(full)]).pvalue)
    lo, hi = t["bootstrap_ci"]
    assert 0 < lo <= np.mean(d) <= hi and t["bootstrap_p_le_0"] == 0.0


def test_equal_methods_are_not_shown_and_reversed_ones_are_flagged():
    same = {str(s): _pair(s, 1.0, 1.0) for s in range(3)}
    t = ablations.ordering_tests({k: v[0] for k, v in same.items()}, {k: v[1] for k, v in same.items()},
                                 resamples=200)
    assert t["bootstrap_ci"][0] < 0 < t["bootstrap_ci"][1]
    worse = {str(s): _pair(s, 2.0, 0.3) for s in range(3)}
    full, variant = {k: v[0] for k, v in worse.items()}, {k: v[1] for k, v in worse.items()}
    assert ablations.ordering_tests(full, variant, resamples=200)["bootstrap_ci"][1] < 0
    text = ablations.table({"simclr": full, "supcon": variant}, resamples=200)
    assert "| T3: SimCLR > SupCon | 0/3 |" in text and "no (reversed)" in text


def test_only_seeds_both_ran_are_compared_and_old_records_without_subjects_skip_the_bootstrap():
    full = {str(s): _pair(s, 0.3, 2.0)[0] for s in range(3)}
    variant = {"0": _pair(0, 0.3, 2.0)[1], "1": _pair(1, 0.3, 2.0)[1]}
    t = ablations.ordering_tests(full, variant, resamples=200)
    assert t["seeds"] == 2 and t["bootstrap_ci"] is not None
    old = {k: {kk: vv for kk, vv in v.items() if kk != "subjects"} for k, v in variant.items()}
    t = ablations.ordering_tests(full, old)
    assert t["seeds"] == 2 and t["bootstrap_ci"] is None
    assert "n/a" in ablations.table({"simclr": full, "vicreg": old}, resamples=200)


def _record(*args):  # module level: picklable for the worker processes
    return ablations.record(*args)


def test_processes_sharing_an_output_folder_keep_each_others_rows(tmp_path, monkeypatch):
    """Two ablations.py processes writing the same ablations.json (variants run side by side) add rows under a lock
    instead of the last writer dropping the other's: here a second writer's file is read back before each add."""
    import json
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    full_table = ablations.table
    monkeypatch.setattr(ablations, "table", lambda results: full_table(results, resamples=20))  # forked workers too
    path = tmp_path / "ablations.json"
    y = np.array([0, 1, 0, 1, 1, 0])
    rows = [(name, seed, _run(y, y + 0.1 * seed)) for name in ("simclr", "supervised_only") for seed in range(3)]
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(_record, [path] * len(rows), *zip(*rows)))
    stored = json.loads(path.read_text())
    assert {k: sorted(v) for k, v in stored.items()} == {"simclr": ["0", "1", "2"], "supervised_only": ["0", "1", "2"]}
    assert stored["supervised_only"]["2"]["auc"] == pytest.approx(rows[-1][2]["auc"])
    table = (tmp_path / "ablations.md").read_text()
    assert "T6: SSL + probe > supervised only" in table and "| simclr | 3 |" in table
