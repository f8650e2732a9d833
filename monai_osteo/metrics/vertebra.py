"""Evaluation of the vertebral CT paper: patient-level any-positive aggregation, paired significance tests, BMD
agreement and per-site screening tables (ACC, SEN, SPE, F1 in percent).

- [0] Huang, Guo et al., Opportunistic Osteoporosis Diagnosis via Texture-Preserving Self-Supervision, Mixture of
  Experts and Multi-Task Integration (``papers/vertebral_ct_tpswav_moe.txt``), §3.1 (metrics, patient-level rule)
  and §3.2 (paired t-tests, per-site tables).
- [1] McNemar, 1947, Note on the sampling error of the difference between correlated proportions or percentages
  (exact version: a binomial test on the discordant pairs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

from monai_osteo.metrics.screening import screening_metrics

__all__ = ["aggregate_patients", "bmd_agreement", "paired_tests", "paper_metric_percent", "site_metrics"]

_RULES = ("any", "mean")


def _sorted_ids(ids: Iterable) -> list:
    """Patient ids in sorted order; ``str`` order when the ids are of mixed, unorderable types."""
    ids = list(ids)
    try:
        return sorted(ids)
    except TypeError:
        return sorted(ids, key=str)


def aggregate_patients(records: Iterable[Mapping], rule: str = "any", threshold: float = 0.5) -> list[dict]:
    """Patient-level labels and scores from per-vertebra records.

    ``rule="any"`` is the paper's rule ([0] §3.1: "for a patient with N vertebrae, the patient was classified as
    osteoporosis if any one of the vertebrae was diagnosed or predicted as osteoporosis"), applied to the ground
    truth and to the prediction: label = max label, prob = max prob (the ROC score, a decision of the wave-2 spec),
    pred = any(prob >= threshold), which equals ``max prob >= threshold``, so thresholding the patient ``prob``
    reproduces it. ``rule="mean"`` (an alternative, as the hand paper's Eq. 10) keeps label = max label and uses
    prob = mean prob, pred = ``mean prob >= threshold``.

    Args:
        records: one mapping per labelled vertebra with ``patient_id``, ``label`` (0/1), ``prob`` (score of the
            positive class) and optionally ``site``.
        rule: ``"any"`` (paper) or ``"mean"``.
        threshold: decision threshold on the vertebra (``"any"``) or mean (``"mean"``) probability.

    Returns:
        One dict per patient, sorted by ``patient_id``: ``patient_id``, ``site`` (None when the records have none),
        ``label`` (int), ``prob`` (float), ``pred`` (int) and ``n_vertebrae``.
    """
    if rule not in _RULES:
        raise ValueError(f"rule must be one of {_RULES} ('any' is the paper's any-positive rule), got {rule!r}.")
    groups: dict = {}
    for r in records:
        for key in ("patient_id", "label", "prob"):
            if key not in r:
                raise ValueError(f"each record must have 'patient_id', 'label' and 'prob', got keys {sorted(r)!r}.")
        groups.setdefault(r["patient_id"], []).append(r)
    out = []
    for pid in _sorted_ids(groups):
        rs = groups[pid]
        sites = list(dict.fromkeys(r.get("site") for r in rs))
        if len(sites) > 1:
            raise ValueError(
                f"patient {pid!r} has records from several sites {sites!r}; a patient belongs to one site "
                "(check the patient ids: they must be unique across sites, e.g. prefix them with the site)."
            )
        labels = np.asarray([r["label"] for r in rs], dtype=float)
        probs = np.asarray([r["prob"] for r in rs], dtype=float)
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"patient {pid!r}: label must be 0 or 1 per vertebra, got {labels.tolist()}.")
        if not np.isfinite(probs).all():
            raise ValueError(f"patient {pid!r}: prob must be finite per vertebra, got {probs.tolist()}.")
        prob = float(probs.max() if rule == "any" else probs.mean())
        out.append(
            {
                "patient_id": pid,
                "site": sites[0],
                "label": int(labels.max()),
                "prob": prob,
                "pred": int(prob >= threshold),
                "n_vertebrae": len(rs),
            }
        )
    return out


def _as_binary(values: Sequence, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or not np.isin(v, (0, 1)).all():
        raise ValueError(f"{name} must be a 1-D sequence of 0/1 (or bool) per item, got {np.asarray(values)!r}.")
    return v.astype(int)


def paired_tests(correct_a: Sequence, correct_b: Sequence) -> dict:
    """Paired comparison of two methods on the same items from their per-item 0/1 correctness.

    ``t_stat``/``t_pvalue``: the paper's paired t-test ([0] §3.2), ``scipy.stats.ttest_rel(correct_a, correct_b)``
    on the correctness vectors (the unit of pairing is a DECISION of the wave-2 spec: per vertebra). Degenerate
    cases that scipy returns as NaN are resolved: all differences 0 gives ``t_stat`` 0.0 and ``t_pvalue`` 1.0; a
    constant non-zero difference (n >= 2) gives ``t_stat`` ±inf and ``t_pvalue`` 0.0; one differing item alone
    leaves both NaN (no degree of freedom).

    ``mcnemar_*``: McNemar's exact test [1] on the discordant pairs, ``b`` = items A gets right and B wrong,
    ``c`` = the reverse, p = ``scipy.stats.binomtest(b, b + c, 0.5).pvalue`` (two-sided), 1.0 when ``b + c == 0``.

    Args:
        correct_a: (n,) 0/1 or bool, 1 where method A is correct.
        correct_b: (n,) 0/1 or bool, 1 where method B is correct, on the same items in the same order.

    Returns:
        ``n``, ``acc_a``, ``acc_b``, ``t_stat``, ``t_pvalue``, ``mcnemar_b``, ``mcnemar_c``, ``mcnemar_pvalue``.
    """
    a = _as_binary(correct_a, "correct_a")
    b = _as_binary(correct_b, "correct_b")
    if a.shape != b.shape or a.size == 0:
        raise ValueError(
            f"correct_a and correct_b must be non-empty and of one length (the same items), got {a.size}, {b.size}."
        )
    d = a - b
    if not d.any():
        t_stat, t_p = 0.0, 1.0
    elif np.all(d == d[0]):
        t_stat, t_p = (math.copysign(math.inf, d[0]), 0.0) if d.size >= 2 else (math.nan, math.nan)
    else:
        res = stats.ttest_rel(a, b)
        t_stat, t_p = float(res.statistic), float(res.pvalue)
    n_b = int(np.sum((a == 1) & (b == 0)))
    n_c = int(np.sum((a == 0) & (b == 1)))
    mc_p = float(stats.binomtest(n_b, n_b + n_c, 0.5).pvalue) if n_b + n_c > 0 else 1.0
    return {
        "n": int(a.size),
        "acc_a": float(a.mean()),
        "acc_b": float(b.mean()),
        "t_stat": float(t_stat),
        "t_pvalue": float(t_p),
        "mcnemar_b": n_b,
        "mcnemar_c": n_c,
        "mcnemar_pvalue": mc_p,
    }


def _agreement(t: np.ndarray, p: np.ndarray) -> dict:
    n = int(t.size)
    mae = float(np.mean(np.abs(p - t))) if n else math.nan
    constant = n == 0 or np.all(t == t[0]) or np.all(p == p[0])
    r = math.nan if n < 3 or constant else float(stats.pearsonr(t, p).statistic)
    return {"n": n, "mae": mae, "pearson_r": r}


def bmd_agreement(true: Sequence[float], pred: Sequence[float], groups: Sequence | None = None) -> dict:
    """Agreement of predicted with measured BMD: mean absolute error and Pearson r, pooled and per group.

    Report it in g/cm² (de-standardise first). Pairs where either value is NaN (a vertebra without a DXA value) are
    skipped; ``n`` counts the pairs used. ``pearson_r`` (``scipy.stats.pearsonr``) is NaN with fewer than 3 pairs
    or a constant side; ``mae`` is NaN with none.

    Args:
        true: (n,) measured BMD.
        pred: (n,) predicted BMD.
        groups: optional (n,) group name per item (e.g. the DXA device or the site).

    Returns:
        ``{"pooled": {"n", "mae", "pearson_r"}, <group>: {...}, ...}`` with the groups in sorted order.
    """
    t = np.asarray(true, dtype=float)
    p = np.asarray(pred, dtype=float)
    if t.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"true and pred must be 1-D sequences of one length, got shapes {t.shape}, {p.shape}.")
    keep = np.isfinite(t) & np.isfinite(p)
    out = {"pooled": _agreement(t[keep], p[keep])}
    if groups is not None:
        g = list(groups)
        if len(g) != t.size:
            raise ValueError(f"groups must give one name per item ({t.size}), got {len(g)}.")
        if "pooled" in g:
            raise ValueError("groups must not contain the name 'pooled' (reserved for all items); rename that group.")
        for name in _sorted_ids(set(g)):
            sel = keep & np.asarray([x == name for x in g], dtype=bool)
            out[name] = _agreement(t[sel], p[sel])
    return out


def site_metrics(
    records: Iterable[Mapping], threshold: float = 0.5, sites_order: Sequence | None = None, rule: str = "any"
) -> dict:
    """The paper's per-site tables ([0] Tables 2-3): ``screening_metrics`` per site and pooled, at two levels.

    Args:
        records: one mapping per labelled vertebra with ``label`` (0/1), ``prob``, ``site`` and ``patient_id``.
        threshold: decision threshold, for vertebrae and (through ``aggregate_patients``) patients.
        sites_order: order of the per-site entries; sites without records are left out, and a site of the records
            that it does not list is an error (a typo guard). Default: the sites in sorted order.
        rule: patient rule of ``aggregate_patients``, ``"any"`` (paper) or ``"mean"``.

    Returns:
        ``{"vertebra": {site: metrics, ..., "pooled": metrics}, "patient": {same over patients}}``; a site with one
        class has AUC (and, without negatives, specificity) NaN.
    """
    records = list(records)
    if not records:
        raise ValueError("records must hold at least one vertebra.")
    for r in records:
        if "site" not in r or r["site"] is None:
            raise ValueError(f"each record must have a 'site' for site_metrics, got keys {sorted(r)!r}.")
    present = set(r["site"] for r in records)
    if "pooled" in present:
        raise ValueError("no site may be named 'pooled' (reserved for all sites); rename that site.")
    if sites_order is None:
        order = _sorted_ids(present)
    else:
        unlisted = present.difference(sites_order)
        if unlisted:
            raise ValueError(
                f"sites_order {list(sites_order)!r} does not list the sites {_sorted_ids(unlisted)!r} of the records; "
                "add them (or check their spelling)."
            )
        order = [s for s in dict.fromkeys(sites_order) if s in present]
    patients = aggregate_patients(records, rule=rule, threshold=threshold)
    out: dict = {}
    for level, items in (("vertebra", records), ("patient", patients)):
        table = {}
        for site in order:
            sel = [x for x in items if x["site"] == site]
            table[site] = screening_metrics([x["label"] for x in sel], [x["prob"] for x in sel], threshold)
        table["pooled"] = screening_metrics([x["label"] for x in items], [x["prob"] for x in items], threshold)
        out[level] = table
    return out


def paper_metric_percent(m: Mapping) -> dict[str, float]:
    """ACC, SEN, SPE and F1 in percent ([0] §3.1 reports them so) from a ``screening_metrics`` dict."""
    missing = [k for k in ("accuracy", "sensitivity", "specificity", "f1") if k not in m]
    if missing:
        raise ValueError(f"m must be a screening_metrics dict; it lacks {missing!r}.")
    return {
        "ACC": 100.0 * float(m["accuracy"]),
        "SEN": 100.0 * float(m["sensitivity"]),
        "SPE": 100.0 * float(m["specificity"]),
        "F1": 100.0 * float(m["f1"]),
    }
