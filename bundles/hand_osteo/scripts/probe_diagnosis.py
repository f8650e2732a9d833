"""How much osteoporosis signal do the bone-patch features of a trained run carry? (subject-level 5-fold CV AUC)

    python bundles/hand_osteo/scripts/probe_diagnosis.py --run bundles/hand_osteo/runs/quick [--size 64]

For every labelled subject of the run's patch cache (all splits pooled), a class-balanced logistic regression on
standardised per-bone features is cross-validated subject-wise (5 folds, stratified); a subject's score is the mean
of its bones' probabilities (Eq. 10). Feature sets:

- 6 hand-made statistics of each patch (mean, std, 10th/90th percentile of the bone pixels, bone fraction, side), on
  the cached patch (native pixel scale) and on the classifier's input (the patch with the run's
  ``patch_normalization``, resized to the probe size);
- 2 statistics that a radiograph's display window (v -> a v + b on all its pixels) leaves unchanged:
  (mean - p10) / (p90 - p10) and std / (p90 - p10) of the bone pixels. If they carry the signal nearly as well as
  the 4 raw statistics, the signal is in the shape of the bone's intensity distribution, and the window is noise;
- the same ResNet randomly initialised, twice: with BatchNorm's initial statistics (mean 0, variance 1: every
  BatchNorm is the identity in eval mode, the network is positively homogeneous and passes the absolute intensity
  scale through) and with the statistics re-estimated on the patches (what any trained encoder has; the fair
  "random features" reference for a trained encoder);
- the run's SSL encoder (frozen).

The encoders' features are read as the run's probe reads them (``run.json``'s ``feature_pooling``: the last stage's
average, or the averages of all four stages).

Prints the best AUC over C in {1e-4 ... 100} per set (the best C is chosen on the same folds, an optimistic ceiling
for a linear probe, not a test result), and beside it the run's own split: fitted on the training subjects, C chosen
on the validation subjects' AUC, AUC on the test subjects (a test result on the subjects the pipeline is tested on).
``--sets statistics`` computes the hand-made statistics only (seconds); the set "4 intensity statistics" (the first
four of the six) is the one the repository README compares the pipeline with.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from monai_osteo.networks.nets import BoneClassifier
from monai_osteo.transforms.presets import bone_patch_preprocessingd


def classifier_inputs(records, size: int, normalization: str | None = None) -> torch.Tensor:
    """(N, 1, size, size) patches as the probe and the evaluation feed them to the encoder."""
    tf = bone_patch_preprocessingd("image", size, normalization)
    return torch.stack([tf({"image": r["patch"]})["image"] for r in records])


@torch.no_grad()
def encoder_features(records, size: int, backbone: str, ckpt: Path | None, recalibrate_bn: bool = False,
                     inputs: torch.Tensor | None = None, normalization: str | None = None,
                     pooling: str = "avg") -> np.ndarray:
    """Frozen (eval-mode) features with the run's ``feature_pooling``; ``recalibrate_bn`` first re-estimates every
    BatchNorm's statistics on the inputs."""
    torch.manual_seed(0)
    clf = BoneClassifier(backbone=backbone, feature_pooling=pooling)
    if ckpt is not None:
        clf.load_encoder(torch.load(ckpt, map_location="cpu"))
    x = classifier_inputs(records, size, normalization) if inputs is None else inputs
    enc = clf.backbone
    if recalibrate_bn:
        for m in enc.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over all batches
        enc.train()
        for i in range(0, len(x), 64):
            enc(x[i:i + 64])
    enc.eval()
    return torch.cat([enc(x[i:i + 64]) for i in range(0, len(x), 64)]).numpy()


def simple_features(records, size: int | None = None, normalization: str | None = None) -> np.ndarray:
    """6 statistics per patch, of the cached patch (``size`` None) or of the classifier input at ``size``."""
    rows = []
    patches = ([np.load(r["patch"]).astype(np.float32)[0] for r in records] if size is None
               else [p[0] for p in classifier_inputs(records, size, normalization).numpy()])
    for p in patches:
        nz = p[p != 0] if (p != 0).any() else np.zeros(1, np.float32)
        rows.append([nz.mean(), nz.std(), np.percentile(nz, 90), np.percentile(nz, 10), nz.size / p.size, p.shape[0]])
    return np.asarray(rows)


def cv_auc(x: np.ndarray, sid: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    subjects = np.unique(sid)
    ys = np.array([y[sid == s][0] for s in subjects])
    best = (0.0, 0.0, 0.0)
    for c in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0):
        aucs = []
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(subjects, ys):
            m = np.isin(sid, subjects[tr])
            sc = StandardScaler().fit(x[m])
            lr = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(sc.transform(x[m]), y[m])
            p = lr.predict_proba(sc.transform(x))[:, 1]
            aucs.append(roc_auc_score(ys[te], [p[sid == s].mean() for s in subjects[te]]))
        if np.mean(aucs) > best[0]:
            best = (float(np.mean(aucs)), float(np.std(aucs)), c)
    return best


def split_auc(x: np.ndarray, sid: np.ndarray, y: np.ndarray, split: np.ndarray) -> tuple[float, float, float]:
    """(validation AUC, test AUC, C): logistic probe fitted on the training patches, C chosen on validation subjects."""
    tr, va, te = (split == "training"), (split == "validation"), (split == "test")
    if not (tr.any() and va.any() and te.any()):
        return float("nan"), float("nan"), float("nan")

    def subject_auc(p, m):
        subjects = np.unique(sid[m])
        return roc_auc_score([y[m][sid[m] == s][0] for s in subjects], [p[m][sid[m] == s].mean() for s in subjects])

    sc = StandardScaler().fit(x[tr])
    best = (-1.0, float("nan"), float("nan"))
    for c in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0):
        lr = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(sc.transform(x[tr]), y[tr])
        p = lr.predict_proba(sc.transform(x))[:, 1]
        v = subject_auc(p, va)
        if v > best[0]:
            best = (float(v), float(subject_auc(p, te)), c)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="output_dir of a train.json run")
    p.add_argument("--size", type=int, default=None, help="encoder input side (default: the run's probe size)")
    p.add_argument("--backbone", default=None, help="encoder architecture (default: the run's, else resnet50)")
    p.add_argument("--sets", default="all", choices=["all", "statistics"],
                   help="'statistics': the hand-made statistics only, no encoder features")
    args = p.parse_args(argv)
    run = json.loads((Path(args.run) / "run.json").read_text())
    root = Path(run["patches"])
    index = json.loads((root / "index.json").read_text())
    records = [dict(r, patch=str(root / r["patch"])) for r in index["patches"] if "probe" in r["role"]]
    sid = np.array([r["subject_id"] for r in records])
    y = np.array([r["label"] for r in records])
    split = np.array([r["split"] for r in records])
    size = args.size or int(run["probe_spatial_size"])
    args.backbone = args.backbone or run.get("backbone", "resnet50")
    norm = run.get("patch_normalization")
    pooling = run.get("feature_pooling", "avg")
    native = simple_features(records)
    mean, std, p90, p10 = native[:, :4].T
    span = np.maximum(p90 - p10, 1e-6)
    sets = {"hand-made bone statistics (6 per bone), cached patch": native,
            "4 intensity statistics (mean, std, p90, p10 of the bone pixels), cached patch": native[:, :4],
            "2 window-invariant statistics ((mean - p10) / (p90 - p10), std / (p90 - p10)), cached patch":
                np.c_[(mean - p10) / span, std / span],
            f"hand-made bone statistics, classifier input ({size} px, normalisation {norm})":
                simple_features(records, size, norm)}
    if args.sets == "all":
        x = classifier_inputs(records, size, norm)
        sets[f"random-init {args.backbone} ({pooling} pooling), initial BatchNorm statistics"] = encoder_features(
            records, size, args.backbone, None, inputs=x, pooling=pooling)
        sets[f"random-init {args.backbone} ({pooling} pooling), BatchNorm statistics of the patches"] = \
            encoder_features(records, size, args.backbone, None, recalibrate_bn=True, inputs=x, pooling=pooling)
        if run.get("ssl"):
            sets[f"SSL {args.backbone} of the run ({size} px, {pooling} pooling)"] = encoder_features(
                records, size, args.backbone, Path(run["ssl"]) / "model.pt", inputs=x, pooling=pooling)
    print(f"{len(np.unique(sid))} subjects, {len(records)} bone patches")
    for name, x in sets.items():
        auc, sd, c = cv_auc(x, sid, y)
        val, test, c_split = split_auc(x, sid, y, split)
        print(f"{name}: subject CV AUC {auc:.3f} ± {sd:.3f} (C={c:g}); the run's split: validation {val:.3f}, "
              f"test {test:.3f} (C={c_split:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
