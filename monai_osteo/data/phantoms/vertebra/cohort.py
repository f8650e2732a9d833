"""Generate the phantom vertebral-CT cohort: CT volumes, VerSe label maps, DXA records and a MONAI datalist.

Mirrors the paper's Table 1 (Huang, Guo et al., opportunistic osteoporosis diagnosis from CT): sites A–C
(internal; DXA on Hologic, GE Lunar, MEDIX) and D (external, Hologic, test only), patient-wise splits,
DXA of L1–L4 labelled per vertebra (T ≤ −2.5), unlabelled pre-training vertebrae = every visible level of
the training patients. Every patient is drawn and rendered from its own random stream, so files are
byte-identical for a seed whatever the number of workers; files are written under a temporary name and
renamed (never half-written).
"""

from __future__ import annotations

import fcntl
import gzip
import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_osteo.data.phantoms.jobs import run_jobs, write_cohort
from monai_osteo.data.phantoms.vertebra.biology import DEVICES, SITES, T_SCORE_THRESHOLD, sample_patient
from monai_osteo.data.phantoms.vertebra.levels import LEVELS, VERSE_LABELS, position_of
from monai_osteo.data.phantoms.vertebra.render import render_patient
from monai_osteo.io import atomic_write

__all__ = ["VERTEBRA_PRESETS", "ensure_vertebra_cohort", "generate_vertebra_cohort", "write_nifti"]

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
_SPLITS = ("training", "validation", "test")
#: named sizes: patients per site and split (training, validation, test), CT in-plane pixel range, fine grid
VERTEBRA_PRESETS = {
    "tiny": {"patients": {"A": (8, 2, 4), "B": (5, 1, 3), "C": (4, 1, 2), "D": (0, 0, 4)},
             "inplane_mm": (1.0, 1.2), "slices": (2.0, 3.0), "fine_mm": 0.6},
    "quick": {"patients": {"A": (60, 10, 30), "B": (40, 8, 16), "C": (24, 6, 12), "D": (0, 0, 20)},
              "inplane_mm": (0.8, 1.0), "slices": (1.25, 2.0, 3.0), "fine_mm": 0.6},
    "paper": {"patients": {"A": (1330, 226, 669), "B": (683, 112, 325), "C": (217, 36, 106), "D": (0, 0, 193)},
              "inplane_mm": (0.6, 0.9), "slices": None, "fine_mm": 0.3},
}


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    """Write a ``.nii.gz`` byte-identically for identical inputs (gzip without a timestamp), atomically."""
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    data = gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)  # level 1: 3x faster, ~10% larger on noisy CT
    atomic_write(path, lambda f: f.write(data))


def _job(args) -> tuple[list | None, str | None]:
    out, pid, site, split, seed, stream, options = args
    try:
        rng = np.random.default_rng([seed, *stream])  # flat: numpy >= 2.5 refuses nested seeds (same stream)
        p = sample_patient(rng, pid, site, device_bias_scale=options["device_bias_scale"],
                           texture_signal=options["texture_signal"],
                           marrow_fat_confound=options["marrow_fat_confound"], inplane_mm=options["inplane_mm"],
                           slices=options["slices"], protocols=options["protocols"], exclusion=options["exclusion"])
        ct = render_patient(p, rng, fine_mm=options["fine_mm"])
        image, labels = Path("ct") / f"{pid}.nii.gz", Path("vertebrae") / f"{pid}.nii.gz"
        write_nifti(out / image, ct.image, ct.affine)
        write_nifti(out / labels, ct.labels, ct.affine)
        drawn = {t["level"] for t in ct.vertebrae}
        device = DEVICES[p.device]
        base = {"image": str(image), "vertebrae": str(labels), "patient_id": pid, "site": site,
                "dxa_device": p.device, "device_index": device["index"], "ct_vendor": p.vendor, "split": split,
                "age": p.age, "sex": p.sex, "protocol": p.protocol,
                "spacing": [round(p.inplane_mm, 4), round(p.inplane_mm, 4), p.slice_mm],
                "slice_thickness": p.slice_mm}
        records = []
        for v in p.vertebrae:
            if v.level not in drawn:
                continue
            rec = {**base, "level": v.level, "verse_label": VERSE_LABELS[v.level], "position": position_of(v.level),
                   "vbmd": round(v.vbmd, 2), "fat_fraction": round(v.fat_fraction, 4),
                   "osteophyte": v.osteophyte}
            labelled = bool(v.dxa) and not v.dxa["excluded"]
            rec["labeled"] = labelled
            if labelled:
                rec.update(bmd=round(v.dxa["bmd"], 4), t_score=round(v.dxa["t_score"], 3), label=v.dxa["label"],
                           abmd_true=round(v.dxa["abmd_true"], 4), abmd_bone=round(v.dxa["abmd_bone"], 4))
            records.append(rec)
        return records, None
    except Exception as e:  # a batch job reports the failing patient and finishes the rest
        return None, f"{pid}: {type(e).__name__}: {e}"


def generate_vertebra_cohort(out_dir: str | os.PathLike, preset: str = "quick", seed: int = 0,
                             device_bias_scale: float = 1.0, texture_signal: float = 1.0,
                             marrow_fat_confound: float = 1.0, patients: dict | None = None,
                             protocols: dict | None = None, exclusion: float | None = None,
                             workers: int | None = None, progress: bool = True) -> Path:
    """Write the phantom vertebral-CT cohort to ``out_dir`` and return the path of its ``datalist.json``.

    Args:
        out_dir: output folder (created): ``ct/`` (int16 HU NIfTI), ``vertebrae/`` (uint8 VerSe label maps),
            ``datalist.json``, ``cohort.json``.
        preset: ``tiny`` (CI), ``quick`` (CPU pipeline) or ``paper`` (Table 1 counts), see ``VERTEBRA_PRESETS``.
        seed: master seed; the same seed and options give byte-identical files.
        device_bias_scale: 1 = devices read and reference as their vendors; 0 = every device is Hologic (control).
        texture_signal: 1 = BMD acts through the trabecular microarchitecture; 0 = only through mean density.
        marrow_fat_confound: 1 = marrow fat varies with age and BMD; 0 = the same fat fraction for everyone.
        patients: ``{site: (training, validation, test)}`` patient counts overriding the preset's.
        protocols: ``{"chest" | "abdomen" | "chest_abdomen": probability}`` overriding every site's CT protocol mix.
        exclusion: per-vertebra DXA exclusion rate overriding every site's.
        workers: processes (default: all cores).
        progress: show a progress bar.

    The datalist holds one record per vertebra: ``training``/``validation``/``test`` are the DXA-labelled
    vertebrae (``label`` 1 = osteoporosis, T-score ≤ −2.5 on the site's device) of the patients of that split,
    ``unlabeled`` every visible vertebra of the training patients (pre-training), ``patients`` one record per
    patient (its CT and label map). ``vbmd``, ``fat_fraction``, ``abmd_true``, ``abmd_bone`` and ``osteophyte``
    are the phantom's latent truth, for checks only: never a model input.
    """
    if preset not in VERTEBRA_PRESETS:
        raise ValueError(f"preset must be one of {sorted(VERTEBRA_PRESETS)}, got {preset!r}.")
    cfg = VERTEBRA_PRESETS[preset]
    counts = {s: tuple(int(n) for n in c) for s, c in (patients or cfg["patients"]).items()}
    for s, c in counts.items():
        if s not in SITES or len(c) != 3 or min(c) < 0:
            raise ValueError(f"patients must map sites {sorted(SITES)} to three counts >= 0, got {s!r}: {c!r}.")
    if sum(sum(c) for c in counts.values()) == 0:
        raise ValueError("patients must hold at least one patient.")
    out = Path(out_dir)
    (out / "ct").mkdir(parents=True, exist_ok=True)
    (out / "vertebrae").mkdir(parents=True, exist_ok=True)
    options = {"device_bias_scale": float(device_bias_scale), "texture_signal": float(texture_signal),
               "marrow_fat_confound": float(marrow_fat_confound), "inplane_mm": tuple(cfg["inplane_mm"]),
               "slices": cfg["slices"], "fine_mm": cfg["fine_mm"], "protocols": protocols, "exclusion": exclusion}
    jobs, n = [], 0
    for si, site in enumerate(sorted(counts)):
        for split, count in zip(_SPLITS, counts[site]):
            for i in range(count):
                n += 1
                jobs.append((out, f"P{n:05d}", site, split, seed, (si, _SPLITS.index(split), i), options))
    results, failures = run_jobs(_job, jobs, workers, progress, "phantom vertebral CT cohort", "patient")
    records = [r for patient in results for r in patient]
    params = {"generator": "monai_osteo.data.phantoms.vertebra", "version": GENERATOR_VERSION, "preset": preset,
              "seed": seed, "patients": {s: list(c) for s, c in counts.items()},
              **{k: options[k] for k in ("device_bias_scale", "texture_signal", "marrow_fat_confound")},
              "protocols": protocols, "exclusion": exclusion}
    patients_list = {}
    for r in records:
        patients_list.setdefault(r["patient_id"], {k: r[k] for k in (
            "image", "vertebrae", "patient_id", "site", "dxa_device", "device_index", "ct_vendor", "split", "age",
            "sex", "protocol", "spacing", "slice_thickness")} | {"levels": []})["levels"].append(r["level"])
    datalist = {
        "name": "monai_osteo phantom vertebral CT",
        "description": "Synthetic thoraco-lumbar CT volumes (HU, RAS) with VerSe vertebra label maps and DXA of "
                       "L1-L4 on three devices (osteoporosis if the device's T-score <= -2.5). One record per "
                       "vertebra; paths are relative to this file.",
        "label_convention": "VerSe: T1-T12 = 8-19, L1-L5 = 20-24, L6 = 25",
        "levels": list(LEVELS), "classes": {"0": "no osteoporosis", "1": "osteoporosis"},
        "t_score_threshold": T_SCORE_THRESHOLD,
        "devices": {k: v["index"] for k, v in DEVICES.items()},
        "generator": params,
        **{s: [r for r in records if r["labeled"] and r["split"] == s] for s in _SPLITS},
        "unlabeled": [{k: v for k, v in r.items() if k not in ("bmd", "t_score", "label", "abmd_true", "abmd_bone")}
                      | {"labeled": False} for r in records if r["split"] == "training"],
        "patients": list(patients_list.values()),
    }
    path = write_cohort(out, datalist, params, failures, len(jobs), item="phantom patients")
    logger.info("wrote %d patients, %d labelled and %d pre-training vertebrae to %s", len(patients_list),
                sum(len(datalist[s]) for s in _SPLITS), len(datalist["unlabeled"]), out)
    return path


def ensure_vertebra_cohort(out_dir: str | os.PathLike, preset: str = "quick", seed: int = 0, **overrides) -> Path:
    """Return the datalist of a cached cohort in ``out_dir``, generating it first if absent or different."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".cohort.lock", "w") as lock:  # one generator per folder (parallel runs, DDP ranks)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            meta = out / "cohort.json"
            if meta.is_file() and (out / "datalist.json").is_file():
                have = json.loads(meta.read_text())
                want = {"preset": preset, "seed": seed, "version": GENERATOR_VERSION,
                        "device_bias_scale": float(overrides.get("device_bias_scale", 1.0)),
                        "texture_signal": float(overrides.get("texture_signal", 1.0)),
                        "marrow_fat_confound": float(overrides.get("marrow_fat_confound", 1.0))}
                if not have.get("failures") and all(have.get(k) == v for k, v in want.items()) and (
                        "patients" not in overrides or have.get("patients") == {
                            s: list(c) for s, c in overrides["patients"].items()}):
                    return out / "datalist.json"
            return generate_vertebra_cohort(out, preset=preset, seed=seed, **overrides)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
