"""Generate the phantom hand-radiograph cohort: images, annotator masks and a MONAI datalist.

Mirrors the journal paper's two datasets: labelled subjects with DXA T-scores (192, ~28% osteoporotic)
and unlabelled radiographs for segmentation and pretraining (1154). Every image is rendered from its
own random stream ``(seed, set, index)``, so the output is byte-identical for a seed whatever the
number of workers, and files are written to a temporary name and renamed (never half-written).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from monai_osteo.data.labels import CHANNEL_DEF
from monai_osteo.data.phantoms.anatomy import place_hand
from monai_osteo.data.phantoms.jobs import run_jobs, write_cohort
from monai_osteo.data.phantoms.render import render_hand
from monai_osteo.data.phantoms.subjects import SubjectPhenotype, sample_cohort_subjects
from monai_osteo.data.splits import subject_split
from monai_osteo.io import atomic_write

__all__ = ["FIELD_MM", "PRESETS", "generate_hand_cohort", "ensure_hand_cohort", "render_subject"]

logger = logging.getLogger(__name__)

FIELD_MM = (290.0, 290.0 * 2515 / 3588)  # detector field (height, width) in mm; 3588 rows -> 2515 columns
GENERATOR_VERSION = 2  # 2: all-bones masks
#: training / validation / test shares of the labelled subjects (the paper's 80/10/10)
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
#: named sizes; "paper" is the labelled cohort's resolution (2515 x 3588)
PRESETS = {
    "quick": {"subjects": 48, "unlabeled": 96, "height": 384},
    "default": {"subjects": 192, "unlabeled": 1154, "height": 768},
    "paper": {"subjects": 192, "unlabeled": 1154, "height": 3588},
}


def render_subject(subject: SubjectPhenotype, seed: int, stream: int, index: int, height: int,
                   annotators: int = 3):
    """Render one phantom radiograph deterministically from ``(seed, stream, index)``."""
    rng = np.random.default_rng([seed, stream, index])
    spacing = FIELD_MM[0] / height
    width = int(round(FIELD_MM[1] / spacing))
    hand = place_hand(subject, rng, (height * spacing, width * spacing))
    return render_hand(hand, (height, width), spacing, rng, annotators=annotators), spacing


def _save_png(array: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def _job(args) -> tuple[dict | None, str | None]:
    out, sid, subject, seed, stream, index, height, annotators, labelled = args
    try:
        r, spacing = render_subject(subject, seed, stream, index, height, annotators)
        img = Path("images") / f"{sid}.png"
        masks = [Path("masks") / f"{sid}_a{j + 1}.png" for j in range(annotators)]
        truth = Path("masks") / f"{sid}_truth.png"
        bones = Path("masks") / f"{sid}_bones.png"
        _save_png(r.image, out / img)
        _save_png(r.all_bones, out / bones)
        for m, p in zip(r.annotators, masks):
            _save_png(m, out / p)
        _save_png(r.truth, out / truth)
        rec = {
            "image": str(img), "masks": [str(p) for p in masks], "mask_weights": r.weights, "mask_truth": str(truth),
            "mask_all_bones": str(bones),
            "subject_id": sid, "pixel_spacing": [spacing, spacing], "bones_missing": r.acquisition["missing_bones"],
            "ring": r.acquisition["ring"], "laterality": r.acquisition["laterality"],
        }
        if labelled:
            rec.update(label=subject.label, t_score=subject.t_score, sex=subject.sex, age=subject.age)
        return rec, None
    except Exception as e:  # a batch job reports the failing item and finishes the rest
        return None, f"{sid}: {type(e).__name__}: {e}"


def generate_hand_cohort(out_dir: str | os.PathLike, subjects: int = 192, unlabeled: int = 1154, seed: int = 0,
                         height: int = 768, annotators: int = 3, prevalence: float | None = 0.28,
                         split_fractions: Sequence[float] = SPLIT_FRACTIONS, workers: int | None = None,
                         progress: bool = True) -> Path:
    """Write the phantom hand cohort to ``out_dir`` and return the path of its ``datalist.json``.

    Args:
        out_dir: output folder (created); holds ``images/``, ``masks/``, ``datalist.json``, ``cohort.json``.
        subjects: number of labelled subjects (one radiograph each).
        unlabeled: number of unlabelled radiographs (with annotator masks, no diagnosis).
        seed: master seed; the same seed gives byte-identical files.
        height: image height in pixels (width follows the 203 x 290 mm field; 3588 is the paper's size).
        annotators: number M >= 1 of annotator masks per image.
        prevalence: exact share of osteoporotic labelled subjects, or None for the model's own rate.
        split_fractions: training, validation and test shares of the labelled subjects (label-stratified).
        workers: processes (default: all cores).
        progress: show a progress bar.
    """
    if subjects < 0 or unlabeled < 0 or subjects + unlabeled == 0:
        raise ValueError(f"subjects and unlabeled must be >= 0 and not both 0, got {subjects!r}, {unlabeled!r}.")
    if not 64 <= height <= 8192:
        raise ValueError(f"height must be in [64, 8192] pixels, got {height!r}.")
    if annotators < 1:
        raise ValueError(f"annotators must be >= 1, got {annotators!r}.")
    split_fractions = [float(f) for f in split_fractions]
    if len(split_fractions) != 3 or min(split_fractions) < 0 or abs(sum(split_fractions) - 1.0) > 1e-6:
        raise ValueError(f"split_fractions must be three shares (training, validation, test) summing to 1, "
                         f"got {split_fractions!r}.")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    labelled = sample_cohort_subjects(subjects, np.random.default_rng([seed, 0]), prevalence)
    labelled = [labelled[i] for i in np.random.default_rng([seed, 1]).permutation(len(labelled))]
    pool = sample_cohort_subjects(unlabeled, np.random.default_rng([seed, 2]), None)
    jobs = [(out, f"HX{i + 1:04d}", s, seed, 10, i, height, annotators, True) for i, s in enumerate(labelled)]
    jobs += [(out, f"HU{i + 1:05d}", s, seed, 11, i, height, annotators, False) for i, s in enumerate(pool)]
    records, failures = run_jobs(_job, jobs, workers, progress, "phantom hand cohort", "img", chunksize=4)
    lab = [r for r in records if "label" in r]
    unl = [r for r in records if "label" not in r]
    split_l = subject_split([r["subject_id"] for r in lab], [r["label"] for r in lab], split_fractions, seed=seed)
    split_u = subject_split([r["subject_id"] for r in unl], None, seed=seed + 1)
    for r in lab:
        r["split"] = split_l[r["subject_id"]]
    for r in unl:
        r["split"] = split_u[r["subject_id"]]
    params = {"generator": "monai_osteo.data.phantoms.hand", "version": GENERATOR_VERSION, "subjects": subjects,
              "unlabeled": unlabeled, "seed": seed, "height": height, "annotators": annotators,
              "prevalence": prevalence, "split_fractions": split_fractions}
    datalist = {
        "name": "monai_osteo phantom hand radiographs",
        "description": "Synthetic hand/wrist radiographs with M annotator masks of ulna, radius, M1-M5 and a "
                       "latent DXA T-score (osteoporosis if T < -2.5). Paths are relative to this file.",
        "labels": dict(CHANNEL_DEF),
        "classes": {"0": "normal", "1": "osteoporosis"},
        "generator": params,
        **{name: [r for r in lab if r["split"] == name] for name in ("training", "validation", "test")},
        "unlabeled": unl,
    }
    path = write_cohort(out, datalist, params, failures, len(jobs))
    logger.info("wrote %d labelled and %d unlabelled phantoms to %s", len(lab), len(unl), out)
    return path


def ensure_hand_cohort(out_dir: str | os.PathLike, preset: str = "quick", seed: int = 0, **overrides) -> Path:
    """Return the datalist of a cached cohort in ``out_dir``, generating it first if absent or different."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}.")
    kwargs = {**PRESETS[preset], "seed": seed, **overrides}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # one generator at a time per folder (parallel runs, DDP ranks); the others then find it up to date
    with open(out / ".cohort.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _ensure(out, kwargs)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ensure(out: Path, kwargs: dict) -> Path:
    meta = out / "cohort.json"
    if meta.is_file() and (out / "datalist.json").is_file():
        have = json.loads(meta.read_text())
        have.setdefault("split_fractions", list(SPLIT_FRACTIONS))  # cohorts written before the option existed
        want = {k: kwargs[k] for k in ("subjects", "unlabeled", "seed", "height")}
        want["split_fractions"] = [float(f) for f in kwargs.get("split_fractions", SPLIT_FRACTIONS)]
        if not have.get("failures") and have.get("version") == GENERATOR_VERSION and all(
                have.get(k) == v for k, v in want.items()):
            return out / "datalist.json"
    return generate_hand_cohort(out, **kwargs)
