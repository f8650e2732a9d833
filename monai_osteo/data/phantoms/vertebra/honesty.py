"""Honesty figures of a vertebral-CT cohort: is the signal where the method looks, and only as strong as real?

``python -m monai_osteo.data.phantoms.vertebra.honesty DIR`` measures, from the CT volumes and label maps
(through the same ``LoadCTd`` → ``ExtractVertebraROId`` path a bundle uses), per labelled vertebra: the
mean HU of the eroded trabecular body (the Pickhardt-style opportunistic baseline) and the mean GLCM
texture maps there (mean and standard deviation of each map over the body); then AUCs of the baseline, of
texture + mean HU (cross-validated logistic regression),
of geometry for the level, and the label disagreement between devices. Tests assert bands on these figures
with controls that can fail (``texture_signal=0``, ``device_bias_scale=0``, shuffled labels).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

__all__ = ["TEXTURE_FEATURES", "device_disagreement", "honesty_report", "level_identifiability", "measure_vertebrae"]

logger = logging.getLogger(__name__)

TEXTURE_FEATURES = ("Autocorrelation", "JointAverage", "Contrast", "DifferenceAverage")


def measure_vertebrae(datalist: str | Path, splits=("training", "validation", "test"), roi_size: int = 32,
                      roi_spacing: float = 1.5, erode_mm: float = 3.0, texture: bool = True) -> list[dict]:
    """Per labelled vertebra of ``splits``: record fields + ``mean_hu``, texture means and body geometry."""
    from monai_osteo.data.readers import LoadCTd
    from monai_osteo.transforms.texture import GLCMTextureMap
    from monai_osteo.transforms.vertebra import ExtractVertebraROI

    path = Path(datalist)
    data = json.loads(path.read_text())
    by_patient = defaultdict(list)
    for split in splits:
        for r in data.get(split, []):
            by_patient[r["patient_id"]].append(r)
    labelled = all(r.get("labeled", False) for recs in by_patient.values() for r in recs)
    loader = LoadCTd(keys=("image", "vertebrae"), label_keys=("vertebrae",))
    glcm = GLCMTextureMap(features=TEXTURE_FEATURES, kernel_radius=1, bin_width=25.0)
    out = []
    for recs in by_patient.values():
        x = loader({"image": str(path.parent / recs[0]["image"]), "vertebrae": str(path.parent / recs[0]["vertebrae"])})
        extractor = ExtractVertebraROI(roi_size, roi_spacing, levels=[r["level"] for r in recs])
        rois = {roi.meta["level"]: (roi, mask) for roi, mask in extractor(x["image"], x["vertebrae"])}
        for r in recs:
            if r["level"] not in rois:
                continue
            roi, mask = rois[r["level"]]
            trab = ndimage.binary_erosion(mask[0].numpy() > 0, iterations=max(1, int(round(erode_mm / roi_spacing))))
            if trab.sum() < 20:
                continue
            hu = roi[0].numpy()
            rec = {**r, "mean_hu": float(hu[trab].mean()), "sd_hu": float(hu[trab].std()),
                   "extent_mm": roi.meta["extent_mm"], "body_volume_mm3": roi.meta["body_volume_mm3"]}
            if texture and labelled:
                maps = glcm(torch.as_tensor(hu)[None], mask=torch.as_tensor(trab)[None])
                for name, m in zip(TEXTURE_FEATURES, maps):  # each map's level and its heterogeneity in the body
                    rec[name] = float(np.nanmean(m.numpy()[trab]))
                    rec[name + "_sd"] = float(np.nanstd(m.numpy()[trab]))
            out.append(rec)
    return out


def _cv_auc(x: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = 5, repeats: int = 4) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = []
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    for tr, te in cv.split(x, y):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(x[tr], y[tr])
        scores.append(roc_auc_score(y[te], model.decision_function(x[te])))
    return float(np.mean(scores))


def device_disagreement(records: list[dict], bias_scale: float = 1.0) -> float:
    """Share of vertebrae whose noise-free label differs between any two devices reading the same true aBMD."""
    from monai_osteo.data.phantoms.vertebra.biology import DEVICES, T_SCORE_THRESHOLD, dxa_reading

    class _NoNoise:
        @staticmethod
        def normal():
            return 0.0

    differ = 0
    for r in records:
        labels = {int(dxa_reading(r["abmd_true"], d, r["level"], _NoNoise, bias_scale)[1] <= T_SCORE_THRESHOLD)
                  for d in DEVICES}
        differ += len(labels) > 1
    return differ / max(len(records), 1)


def honesty_report(measured: list[dict], seed: int = 0) -> dict:
    """AUCs and rates of the measured vertebrae (see the module docstring)."""
    from sklearn.metrics import roc_auc_score

    y = np.array([r["label"] for r in measured])
    hu = np.array([r["mean_hu"] for r in measured])
    rep = {"vertebrae": len(measured), "prevalence": float(y.mean()),
           "mean_hu_auc": float(roc_auc_score(y, -hu))}
    if "Contrast" in measured[0]:
        tex = np.array([[r[f] for f in TEXTURE_FEATURES] + [r[f + "_sd"] for f in TEXTURE_FEATURES]
                        for r in measured])
        rep["mean_hu_cv_auc"] = _cv_auc(hu[:, None], y, seed)
        rep["texture_cv_auc"] = _cv_auc(np.column_stack([hu, tex]), y, seed)
        rep["texture_gain"] = rep["texture_cv_auc"] - rep["mean_hu_cv_auc"]
        shuffled = np.random.default_rng(seed).permutation(y)
        rep["shuffled_cv_auc"] = _cv_auc(np.column_stack([hu, tex]), shuffled, seed)
    dev = np.array([r["device_index"] for r in measured])
    onehot = np.eye(3)[dev]
    rep["device_only_cv_auc"] = _cv_auc(onehot, y, seed) if len(set(dev)) > 1 else 0.5
    rep["device_disagreement"] = device_disagreement(measured)
    return rep


def level_identifiability(measured: list[dict], seed: int = 0) -> dict:
    """How well body geometry alone (extents, volume) tells thoracic from lumbar and L1-L4 apart (CV)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    geo = np.array([[*r["extent_mm"], r["body_volume_mm3"] ** (1 / 3)] for r in measured])
    levels = np.array([r["level"] for r in measured])
    thoracic = np.array([lv.startswith("T") for lv in levels]).astype(int)
    rep = {"vertebrae": len(measured)}
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    if 0 < thoracic.sum() < len(thoracic):
        rep["thoracic_vs_lumbar_accuracy"] = float(cross_val_score(model, geo, thoracic, cv=cv).mean())
    lumbar = np.isin(levels, ["L1", "L2", "L3", "L4"])
    if len(set(levels[lumbar])) == 4:
        rep["l1_to_l4_accuracy"] = float(cross_val_score(model, geo[lumbar], levels[lumbar], cv=cv).mean())
    return rep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_osteo.data.phantoms.vertebra.honesty",
                                     description="Measure a phantom vertebral-CT cohort's honesty figures.")
    parser.add_argument("cohort", help="folder holding datalist.json")
    parser.add_argument("--no-texture", action="store_true", help="skip the GLCM texture features")
    parser.add_argument("--levels", action="store_true",
                        help="also measure level identifiability on the pre-training vertebrae (every level)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = Path(args.cohort) / "datalist.json"
    measured = measure_vertebrae(path, texture=not args.no_texture)
    report = {"all": honesty_report(measured)}
    for site in sorted({r["site"] for r in measured}):
        recs = [r for r in measured if r["site"] == site]
        if len({r["label"] for r in recs}) == 2:
            report[site] = {k: v for k, v in honesty_report(recs).items() if k in (
                "vertebrae", "prevalence", "mean_hu_auc", "device_disagreement")}
            report[site]["per_patient"] = len(recs) / len({r["patient_id"] for r in recs})
    if args.levels:
        report["levels"] = level_identifiability(measure_vertebrae(path, splits=("unlabeled",), texture=False))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
