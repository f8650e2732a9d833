"""The classical screening baseline: 2nd-metacarpal cortical index (2MCI) + a one-feature logistic model.

The 2MCI is measured on each labelled radiograph with the annotators' majority-vote M2 mask; a logistic
regression fitted on the training subjects maps it to a probability of osteoporosis, and its one free threshold
is chosen on the training + validation subjects' macro-F1 (the paper's selection criterion). The demo
(``python -m monai_osteo.demo``) and the hand_osteo evaluation both call :func:`cortical_index_baseline`.

- [0] Patel et al., 2020, The 2nd metacarpal cortical index as a simple screening tool for osteopenia.
- [1] hand_xray_osteoporosis_journal (subject-level metrics, macro-F1 model selection).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import load_decathlon_datalist
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from monai_osteo.data.readers import LoadRadiographd
from monai_osteo.metrics import best_threshold, metacarpal_cortical_index, screening_metrics

__all__ = ["BASELINE_METHOD", "cortical_index_baseline", "majority_vote", "measure_cohort"]

logger = logging.getLogger("monai_osteo.hand_osteo")
BASELINE_METHOD = "2nd-metacarpal cortical index (annotator majority-vote mask) + logistic regression"
M2_LABEL = 4


def majority_vote(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Per-pixel most frequent label of M annotator label maps (ties go to the lower label)."""
    stack = np.stack(masks).astype(np.int64)
    counts = np.stack([(stack == k).sum(0) for k in range(int(stack.max()) + 1)])
    return counts.argmax(0)


def measure_cohort(datalist: str | os.PathLike, split: str) -> tuple[list[dict], list[str]]:
    """2MCI of every radiograph of ``split``; unreadable items are reported and skipped.

    Returns:
        rows ``{"subject_id", "label", "t_score", "ci"}`` (``ci`` NaN where M2 cannot be measured or the record
        has no annotator ``masks``) and the image paths that could not be read.
    """
    items = load_decathlon_datalist(datalist, data_list_key=split)
    image_reader = LoadRadiographd(keys="image")
    mask_reader = LoadRadiographd(keys="mask", normalize=False)
    rows, failed = [], []
    for item in tqdm(items, desc=f"2MCI {split}", unit="subject", leave=False):
        row = {"subject_id": str(item.get("subject_id", item["image"])), "label": item.get("label"),
               "t_score": item.get("t_score"), "ci": float("nan")}
        if not item.get("masks"):
            rows.append(row)
            continue
        try:
            img = image_reader({"image": item["image"]})["image"]
            masks = [np.asarray(mask_reader({"mask": m})["mask"][0]) for m in item["masks"]]
            row["ci"] = metacarpal_cortical_index(np.asarray(img[0]), majority_vote(masks), label=M2_LABEL,
                                                  fit_outer=True)
        except Exception as e:  # report the bad file, finish the rest
            logger.error("%s: %s", item["image"], e)
            failed.append(str(item["image"]))
            continue
        rows.append(row)
    return rows, failed


def _subjects(rows: Sequence[dict]) -> tuple[dict[str, float], dict[str, int], list[str]]:
    """Per subject (first-seen order): mean 2MCI over its measurable radiographs, label; the unmeasurable ones."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["subject_id"], []).append(r)
    ci, labels, unmeasurable = {}, {}, []
    for sid, rs in groups.items():
        if rs[0]["label"] is None:  # an unlabelled radiograph is neither fitted nor evaluated
            continue
        values = [r["ci"] for r in rs if np.isfinite(r["ci"])]
        if not values:
            unmeasurable.append(sid)
            continue
        ci[sid], labels[sid] = float(np.mean(values)), int(rs[0]["label"])
    return ci, labels, unmeasurable


def _skip(split: str, message: str) -> dict:
    logger.warning("2MCI baseline skipped: %s", message)
    return {"method": BASELINE_METHOD, "split": split, "skipped": message}


def cortical_index_baseline(datalist: str | os.PathLike, split: str = "test", fit_split: str = "training",
                            threshold_splits: Sequence[str] = ("training", "validation")) -> dict:
    """Classical 2MCI screening of the subjects of ``split``, fitted on the datalist's other splits.

    Each labelled radiograph is read with ``LoadRadiographd``, its annotator masks are merged by majority vote and
    the 2MCI of M2 is measured (``metacarpal_cortical_index(..., fit_outer=True)``); a subject's index is the mean
    over its measurable radiographs. A ``LogisticRegression`` fitted on ``fit_split`` maps the index to a
    probability of osteoporosis; the threshold maximises macro-F1 on ``threshold_splits``.

    Subjects whose 2MCI cannot be measured (M2 absent or not closed: NaN) are logged and listed under
    ``unmeasurable``; unreadable files are logged, listed under ``failed_files`` and the rest finish. A datalist
    whose records have no annotator ``masks`` (or that lacks a split) is not an error: the baseline is skipped with
    a logged message and the result holds ``skipped`` (the reason) instead of metrics.

    Args:
        datalist: MONAI decathlon datalist (JSON) whose records have ``image``, ``masks`` (annotator label maps,
            M2 = 4), ``subject_id`` and ``label`` (1 = osteoporosis).
        split: the datalist key to evaluate ("test", "validation", ...).
        fit_split: the key the logistic model is fitted on.
        threshold_splits: the keys whose macro-F1 picks the threshold.

    Returns:
        ``method``, ``split``, ``threshold``, ``metrics`` (``screening_metrics`` of ``split``), ``n``,
        ``predictions`` {subject_id: probability}, ``labels`` {subject_id: label}, ``cortical_index``
        {subject_id: 2MCI}, ``unmeasurable`` (subject ids of ``split``), ``failed_files`` and ``splits`` (the same
        per-split entries for every split measured: ``fit_split``, ``threshold_splits`` and ``split``). Or
        ``method``, ``split``, ``skipped`` when the baseline cannot be computed.
    """
    raw = json.loads(Path(datalist).read_text())
    names = list(dict.fromkeys([fit_split, *threshold_splits, split]))
    empty = [k for k in names if not raw.get(k)]
    if empty:
        return _skip(split, f"{datalist}: no labelled subjects under {empty}; the 2MCI baseline needs {names}.")
    records = [r for k in names for r in raw[k]]
    without = sum(not r.get("masks") for r in records)
    if without == len(records):
        return _skip(split, f"{datalist}: no record has annotator 'masks' (label maps with M2 = {M2_LABEL}); the "
                            "2MCI baseline measures M2 on them. Add 'masks' to the records to compare against it.")
    if without:
        logger.warning("2MCI baseline: %d of %d records in %s have no annotator 'masks' and are not measured",
                       without, len(records), names)
    splits, failed = {}, []
    for name in names:
        rows, bad = measure_cohort(datalist, name)
        failed += bad
        ci, labels, unmeasurable = _subjects(rows)
        if unmeasurable:
            logger.warning("%s: 2MCI not measurable (M2 absent) for %d subjects: %s", name, len(unmeasurable),
                           ", ".join(unmeasurable))
        splits[name] = {"cortical_index": ci, "labels": labels, "unmeasurable": unmeasurable}
    y_fit = np.array(list(splits[fit_split]["labels"].values()), dtype=int)
    if len(np.unique(y_fit)) < 2:
        return _skip(split, f"the {fit_split!r} subjects with a measurable 2MCI are not of both classes "
                            f"(labels {sorted(set(y_fit.tolist()))}); the logistic model cannot be fitted.")
    if not splits[split]["labels"]:
        return _skip(split, f"no {split!r} subject has a measurable 2MCI.")
    model = LogisticRegression().fit(np.array(list(splits[fit_split]["cortical_index"].values()))[:, None], y_fit)
    for entry in splits.values():
        x = np.array(list(entry["cortical_index"].values()), dtype=float)[:, None]
        p = model.predict_proba(x)[:, 1] if len(x) else np.zeros(0)
        entry["predictions"] = dict(zip(entry["cortical_index"], p.tolist()))
    # a one-feature model has one free threshold: chosen on training + validation subjects' macro-F1 (the paper's
    # selection criterion); 19 validation subjects alone make it a coin toss
    pooled = [(splits[k]["labels"][sid], splits[k]["predictions"][sid])
              for k in threshold_splits for sid in splits[k]["labels"]]
    threshold = best_threshold([y for y, _ in pooled], [p for _, p in pooled])
    for entry in splits.values():
        ys = list(entry["labels"].values())
        entry["metrics"] = screening_metrics(ys, list(entry["predictions"].values()), threshold) if ys else None
    logger.info("2MCI baseline: fitted on %d %s subjects, threshold %.3f from %d subjects of %s", len(y_fit),
                fit_split, threshold, len(pooled), list(threshold_splits))
    out = splits[split]
    return {"method": BASELINE_METHOD, "split": split, "threshold": threshold, "metrics": out["metrics"],
            "n": out["metrics"]["n"], "predictions": out["predictions"], "labels": out["labels"],
            "cortical_index": out["cortical_index"], "unmeasurable": out["unmeasurable"], "failed_files": failed,
            "splits": splits}
