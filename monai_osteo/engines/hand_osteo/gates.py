"""Fit the screening gates of a trained hand_osteo model and calibrate their thresholds.

- The layout model (:class:`~monai_osteo.metrics.anatomy.HandLayoutModel`) is fitted on the **annotator masks** of
  the training radiographs (majority vote of the M masks, what a user's datalist has), not on predictions.
- The feature model (:class:`~monai_osteo.metrics.ood.BoneFeatureOOD`) is fitted on the classifier encoder's
  features of the bone patches the screening cuts from the training radiographs (the inference path itself).
- Thresholds: on the **validation** radiographs screened the same way (held out from the segmentation, the SSL and
  the probe) and, by default, on the training radiographs scored by cross-fitting (each fold by models fitted
  without it), jointly for ``false_rejection_rate`` of the three scores together (split-conformal,
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

__all__ = ["REPORTED", "SCORES", "fit_screening_gates", "gate_items", "gate_scores", "reference_layouts"]

#: the learned scores that gate, each with a calibrated threshold: layout z, 1 - segmentation confidence, feature score
SCORES = ("layout", "segmentation_uncertainty", "features")
#: measured and reported, not gating by default (threshold ``inf``; set one with ``gate_thresholds``): on the quick
#: preset's three seeds it never was the only score to catch an out-of-distribution image, and it refused hands
#: whose segmentation split a bone
REPORTED = ("fragmentation",)

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
    """The learned scores (:data:`SCORES`) of one screening result (``inf`` where they cannot be computed)."""
    lay = result["layout"]
    found = np.asarray(lay["present"], bool)
    out = {"fragmentation": float(np.nanmax(np.where(found, lay["fragmentation"], np.nan))) if found.any()
           else float("inf"),
           "segmentation_uncertainty": 1.0 - float(result["confidence"]) if found.any() else float("inf")}
    if layout is not None:
        out["layout"] = layout.score(lay)[0]
    if features is not None:
        feats = result.get("bone_features")
        out["features"] = features.score(feats, result["bones_found"]) if feats is not None else float("inf")
    return out


def fit_screening_gates(results: Sequence[Mapping], splits: Sequence[str], references: Sequence[Mapping],
                        fit_split: str = "training", calibration_split: str | Sequence[str] = "validation",
                        false_rejection_rate: float = 0.02, layout_from_predictions: bool = True, folds: int = 5):
    """Fit the layout and feature models and calibrate the three thresholds.

    Args:
        results: screening results (:class:`~monai_osteo.inferers.HandScreeningInferer`) of the radiographs.
        splits: the split of each result.
        references: reference layouts for the layout model (:func:`reference_layouts`).
        fit_split: split whose bone features fit the feature model.
        calibration_split: split (or splits) the thresholds are calibrated on; ``fit_split`` among them is
            cross-fitted (``folds``). With 60 validation radiographs alone a 2 % rate cannot be guaranteed (the
            largest score is used); adding the cross-fitted training radiographs makes it a real quantile.
        false_rejection_rate: target rate of refusing an in-distribution radiograph, all learned gates together.
        layout_from_predictions: fit the layout model on the segmentation's layouts of the ``fit_split``
            radiographs too (those with every bone found), not only on the annotator masks: the gate then learns
            how this segmentation draws a hand (its systematic slips), which tightens the in-distribution scores.
        folds: when ``fit_split`` is among the calibration splits, its radiographs are scored by cross-fitting:
            ``folds`` models, each fitted without one fold (radiographs in turn), score that fold, so no
            calibration score comes from a model fitted on its own radiograph (the annotator masks of the fold stay
            in the layout model's references, and the encoder and the segmentation saw the training radiographs
            when they learned, if they did: the quick preset's segmentation did not).

    Returns:
        ``(gates, report)``: a :class:`~monai_osteo.transforms.screening_gates.ScreeningGates` and a JSON-able
        record of the fit (sample sizes, per-score calibration, validation rejection rate of all gates together).
    """
    from monai_osteo.transforms.screening_gates import ScreeningGates

    splits = list(splits)
    if len(splits) != len(results):
        raise ValueError(f"splits must give one split per result, got {len(splits)} for {len(results)} results.")
    fit_idx = [i for i, s in enumerate(splits) if s == fit_split]

    def fit_models(idx: Sequence[int]) -> tuple[HandLayoutModel, BoneFeatureOOD | None]:
        predicted = [results[i]["layout"] for i in idx] if layout_from_predictions else []
        feats = [np.asarray(results[i]["bone_features"]) for i in idx if results[i].get("bone_features") is not None]
        groups = [b for i in idx if results[i].get("bone_features") is not None for b in results[i]["bones_found"]]
        model = BoneFeatureOOD().fit(np.concatenate(feats), groups) if feats else None
        return HandLayoutModel().fit([*references, *predicted]), model

    layout, features = fit_models(fit_idx)
    if features is None:
        raise ValueError(f"no bone features in split {fit_split!r}: the classifier must be a BoneClassifier and the "
                         "screening must find bones on the training radiographs.")
    cal_splits = [calibration_split] if isinstance(calibration_split, str) else list(calibration_split)
    cal = [gate_scores(r, layout, features) for r, s in zip(results, splits) if s in cal_splits and s != fit_split]
    if fit_split in cal_splits:  # cross-fitting: each fold scored by models fitted without it
        folds = np.arange(len(fit_idx)) % max(2, int(folds))
        for f in np.unique(folds):
            lay_f, feat_f = fit_models([i for i, k in zip(fit_idx, folds) if k != f])
            cal += [gate_scores(results[i], lay_f, feat_f) for i, k in zip(fit_idx, folds) if k == f]
    if len(cal) < 5:
        raise ValueError(f"only {len(cal)} radiographs in split(s) {cal_splits}; at least 5 are needed to calibrate "
                         "the gate thresholds: add validation subjects, or set gate_calibration_split to a list of "
                         "splits (e.g. ['training', 'validation']).")
    calibration = calibrate_thresholds({k: [c[k] for c in cal] for k in SCORES}, false_rejection_rate)
    thresholds = {**calibration["thresholds"], **{k: float("inf") for k in REPORTED}}
    if calibration["uncalibrated"]:
        logger.warning("screening gates: %s could not be calibrated (fewer than 5 of the %d calibration radiographs "
                       "give a finite score, e.g. the segmentation finds fewer than 4 bones): these gates refuse "
                       "every radiograph; train the segmentation longer and refit the gates (configs/fit_gates.json).",
                       calibration["uncalibrated"], len(cal))
    report = {"false_rejection_rate": false_rejection_rate, "fit_split": fit_split,
              "calibration_split": cal_splits, "reference_layouts": len(references),
              "layouts_fitted": layout.n_fitted,
              "layout_from_predictions": bool(layout_from_predictions),
              "feature_patches": features.n_fitted, "feature_dim": int(features.means.shape[1]),
              "bones": list(BONES), "calibration": calibration,
              "calibration_rejection_rate": calibration["empirical_rejection_rate"],
              "calibration_scores": {k: sorted(float(c[k]) for c in cal) for k in (*SCORES, *REPORTED)},
              "calibration_radiographs": len(cal)}
    logger.info("screening gates: thresholds %s; %.1f %% of the %d %s radiographs refused", thresholds,
                100 * report["calibration_rejection_rate"], len(cal), calibration_split)
    return ScreeningGates(layout, features, thresholds, report), report
