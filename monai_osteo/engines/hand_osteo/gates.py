"""Fit the screening gates of a trained hand_osteo model and calibrate their thresholds.

- The layout model (:class:`~monai_osteo.metrics.anatomy.HandLayoutModel`) is fitted on the **annotator masks** of
  the training radiographs (majority vote of the M masks, what a user's datalist has), not on predictions.
- The feature model (:class:`~monai_osteo.metrics.ood.BoneFeatureOOD`) is fitted on the classifier encoder's
  features of the bone patches the screening cuts from the training radiographs (the inference path itself).
- Thresholds: on the **validation** radiographs screened the same way (held out from the segmentation, the SSL and
  the probe), jointly for ``false_rejection_rate`` of the three scores together (split-conformal,
  :func:`~monai_osteo.metrics.ood.calibrate_thresholds`).

``configs/fit_gates.json`` runs the screening evaluator over both splits with
:class:`~monai_osteo.handlers.ScreeningGateFitter`, which calls :func:`fit_screening_gates` at the end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from monai_osteo.data.labels import BONES
from monai_osteo.metrics.anatomy import HandLayoutModel, measure_bone_layout
from monai_osteo.metrics.ood import BoneFeatureOOD, calibrate_thresholds

__all__ = ["SCORES", "fit_screening_gates", "gate_items", "gate_scores", "reference_layouts"]

#: the learned scores, each with a threshold: layout z, largest bone fragmentation, feature score
SCORES = ("layout", "fragmentation", "features")

logger = logging.getLogger("monai_osteo.hand_osteo")


def gate_items(datalist: str | os.PathLike, splits: Sequence[str] = ("training", "validation")) -> dict:
    """The radiographs the gates are fitted/calibrated on, as ``{"items": [{"image", "split", "source",
    "index"}], "failures": []}`` (the shape of :func:`~monai_osteo.bundle.check_radiographs`)."""
    from monai_osteo.bundle.datalist import datalist_items

    items = datalist_items(datalist, ("training", "validation", "test"), list(splits))
    if not items:
        raise ValueError(f"{datalist}: no radiograph in splits {list(splits)} to fit the screening gates on.")
    return {"items": [{"image": d["image"], "split": d.get("split", d["set"]), "source": d["image"], "index": i}
                      for i, d in enumerate(items)], "failures": []}


def reference_layouts(datalist: str | os.PathLike, splits: Sequence[str] = ("training",)) -> list[dict]:
    """Bone layouts (:func:`measure_bone_layout`) of the majority vote of each radiograph's annotator ``masks``."""
    from monai_osteo.bundle.datalist import datalist_items
    from monai_osteo.data import LoadRadiograph
    from monai_osteo.engines.hand_osteo.baseline import majority_vote

    reader = LoadRadiograph(normalize=False, allow_constant=True)
    items = [d for d in datalist_items(datalist, ("training", "validation", "test", "unlabeled"), list(splits))
             if d.get("masks")]
    if not items:
        raise ValueError(f"{datalist}: no radiograph with annotator masks in splits {list(splits)}; the layout model "
                         "learns from them.")
    out = []
    for d in tqdm(items, desc="reference bone layouts", unit="mask", leave=False):
        masks = [np.asarray(reader(m))[0].astype(np.int64) for m in d["masks"]]
        out.append(measure_bone_layout(majority_vote(masks)))
    return out


def gate_scores(result: Mapping, layout: HandLayoutModel | None, features: BoneFeatureOOD | None) -> dict:
    """The three learned scores of one screening result (``inf`` where they cannot be computed)."""
    lay = result["layout"]
    found = np.asarray(lay["present"], bool)
    out = {"fragmentation": float(np.nanmax(np.where(found, lay["fragmentation"], np.nan))) if found.any()
           else float("inf")}
    if layout is not None:
        out["layout"] = layout.score(lay)[0]
    if features is not None:
        feats = result.get("bone_features")
        out["features"] = features.score(feats, result["bones_found"]) if feats is not None else float("inf")
    return out


def fit_screening_gates(results: Sequence[Mapping], splits: Sequence[str], references: Sequence[Mapping],
                        fit_split: str = "training", calibration_split: str | Sequence[str] = "validation",
                        false_rejection_rate: float = 0.02):
    """Fit the layout and feature models and calibrate the three thresholds.

    Args:
        results: screening results (:class:`~monai_osteo.inferers.HandScreeningInferer`) of the radiographs.
        splits: the split of each result.
        references: reference layouts for the layout model (:func:`reference_layouts`).
        fit_split: split whose bone features fit the feature model.
        calibration_split: split (or splits) the thresholds are calibrated on. Radiographs of ``fit_split`` give
            optimistic (low) feature scores: calibrate on them only when no other split is large enough.
        false_rejection_rate: target rate of refusing an in-distribution radiograph, all learned gates together.

    Returns:
        ``(gates, report)``: a :class:`~monai_osteo.transforms.screening_gates.ScreeningGates` and a JSON-able
        record of the fit (sample sizes, per-score calibration, validation rejection rate of all gates together).
    """
    from monai_osteo.transforms.screening_gates import ScreeningGates

    splits = list(splits)
    if len(splits) != len(results):
        raise ValueError(f"splits must give one split per result, got {len(splits)} for {len(results)} results.")
    layout = HandLayoutModel().fit(references)
    feats, groups = [], []
    for r, s in zip(results, splits):
        if s == fit_split and r.get("bone_features") is not None:
            feats.append(np.asarray(r["bone_features"]))
            groups.extend(r["bones_found"])
    if not feats:
        raise ValueError(f"no bone features in split {fit_split!r}: the classifier must be a BoneClassifier and the "
                         "screening must find bones on the training radiographs.")
    features = BoneFeatureOOD().fit(np.concatenate(feats), groups)
    cal_splits = [calibration_split] if isinstance(calibration_split, str) else list(calibration_split)
    cal = [gate_scores(r, layout, features) for r, s in zip(results, splits) if s in cal_splits]
    if len(cal) < 5:
        raise ValueError(f"only {len(cal)} radiographs in split(s) {cal_splits}; at least 5 are needed to calibrate "
                         "the gate thresholds: add validation subjects, or set gate_calibration_split to a list of "
                         "splits (e.g. ['training', 'validation']).")
    calibration = calibrate_thresholds({k: [c[k] for c in cal] for k in SCORES}, false_rejection_rate)
    thresholds = calibration["thresholds"]
    if calibration["uncalibrated"]:
        logger.warning("screening gates: %s could not be calibrated (fewer than 5 of the %d calibration radiographs "
                       "give a finite score, e.g. the segmentation finds fewer than 4 bones): these gates refuse "
                       "every radiograph; train the segmentation longer and refit the gates (configs/fit_gates.json).",
                       calibration["uncalibrated"], len(cal))
    report = {"false_rejection_rate": false_rejection_rate, "fit_split": fit_split,
              "calibration_split": cal_splits, "reference_layouts": layout.n_fitted,
              "feature_patches": features.n_fitted, "feature_dim": int(features.means.shape[1]),
              "bones": list(BONES), "calibration": calibration,
              "calibration_rejection_rate": calibration["empirical_rejection_rate"],
              "calibration_scores": {k: sorted(float(c[k]) for c in cal) for k in SCORES},
              "calibration_radiographs": len(cal)}
    logger.info("screening gates: thresholds %s; %.1f %% of the %d %s radiographs refused", thresholds,
                100 * report["calibration_rejection_rate"], len(cal), calibration_split)
    return ScreeningGates(layout, features, thresholds, report), report
