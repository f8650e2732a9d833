"""Vertebra ROI + texture-pool cache of the vertebra_osteo bundle: every CT is read once, its vertebrae resampled
to aligned ROIs and their texture pools computed once (the paper's "pre-computed feature pool extraction", §3.2).

For each datalist record a vertebra ROI (``ExtractVertebraROI``: aligned, isotropic, HU) and its GLCM maps
(``GLCMTextureMap``, 3-D, masked kernel on the body mask dilated by ``mask_dilation`` voxels) are stacked into a
raw pool ``(1 + F, *roi_size)``: channel 0 = HU, channels 1.. = Autocorrelation, JointAverage, Contrast,
DifferenceAverage (NaN where the kernel has no body voxel pair). Pools are stored un-normalised as float16
``.npy`` (HU resolution <= 0.5) under names derived from a hash of the record (no patient identifier in any file
name). The normalisation is fixed and dataset-level (``normalisation.json``): the HU window ``hu_window`` -> [0, 1]
for the CT, and the mean/std of each texture map over the training pools' finite values -- never per-image
z-scoring, which erases the absolute density that carries the BMD signal (specs/wave2.md §3.1).

A CT that cannot be read or a vertebra that cannot be extracted is reported (log + ``skipped`` in ``cache.json``)
and the rest is cached.

- [0] Huang et al., TP-SwAV + MoE (``papers/vertebral_ct_tpswav_moe.txt``) §2.1, §3.2.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from monai_osteo.io import atomic_write, atomic_write_json

__all__ = ["CACHE_SPLITS", "build_roi_cache", "pool_normalisation", "vertebra_uid"]

logger = logging.getLogger("monai_osteo.bundle")
CACHE_SPLITS = ("training", "validation", "test", "unlabeled")
DOCS = "bundles/vertebra_osteo/docs/README.md"


def pseudonym_key(cache_dir: str | os.PathLike) -> bytes:
    """The cache's secret key of the pseudonyms (``.pseudonym_key``, random, created once, never in an output):
    without it a pseudonym cannot be reversed by hashing candidate identifiers."""
    path = Path(cache_dir) / ".pseudonym_key"
    if not path.is_file():
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x") as fh:  # the first process wins; the others read its key
                fh.write(os.urandom(16).hex())
        except FileExistsError:
            pass
    return bytes.fromhex(path.read_text().strip())


def vertebra_uid(record: Mapping, key: bytes = b"") -> str:
    """Pseudonymous id of a vertebra record (keyed hash of its CT, label map, level and patient): safe in names."""
    text = f"{record.get('image')}|{record.get('vertebrae')}|{record.get('level')}|{record.get('patient_id')}"
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:16]


def patient_uid(patient_id: object, key: bytes = b"") -> str:
    """Pseudonymous patient id (keyed hash): output tables group by it without naming the patient."""
    return "p" + hmac.new(key, str(patient_id).encode(), hashlib.sha256).hexdigest()[:12]


def _check_splits(per_split: Mapping[str, list[dict]], datalist) -> None:
    """Patients must not straddle training/validation/test, and pre-training patients must be training patients."""
    def patients(split: str) -> set:
        return {str(d.get("patient_id", d["image"])) for d in per_split.get(split, [])}

    train, val, test, unl = (patients(s) for s in CACHE_SPLITS)
    for a, b, pa, pb in (("training", "validation", train, val), ("training", "test", train, test),
                         ("validation", "test", val, test)):
        if pa & pb:
            raise ValueError(f"{datalist}: {len(pa & pb)} patient(s) have vertebrae in both {a} and {b}; split by "
                             f"patient (patient_id), or the test metrics are optimistic (format: {DOCS}).")
    if unl - train:
        raise ValueError(f"{datalist}: {len(unl - train)} patient(s) of 'unlabeled' are not training patients; "
                         "pre-training must see training patients only (their vertebrae would leak into the "
                         f"normalisation and the encoder) (format: {DOCS}).")


def _select_unlabeled(items: list[dict], limit: int | None, seed: int) -> list[dict]:
    if limit is None or len(items) <= limit:
        return items
    keep = np.random.default_rng(np.random.SeedSequence([int(seed), 2506])).permutation(len(items))[:limit]
    return [items[i] for i in sorted(keep)]


def build_roi_cache(datalist: str | os.PathLike, cache_dir: str | os.PathLike, roi_size: Sequence[int] = (32, 32, 32),
                    roi_spacing: float = 1.5, features: Sequence[str] | None = None, kernel_radius: int = 1,
                    bin_width: float = 25.0, mask_dilation: int = 2, hu_window: Sequence[float] = (-200.0, 1300.0),
                    unlabeled_limit: int | None = None, seed: int = 0, limit: int | None = None,
                    workers: int = 1, progress: bool = True) -> str:
    """Cache the ROI texture pool of every record of ``datalist``; return the path of the cached datalist.

    Args:
        datalist: the vertebra datalist (per-vertebra records with ``image`` = CT, ``vertebrae`` = label map,
            ``level``; labelled records with ``label``, ``bmd``, ``device_index``; see the bundle docs).
        cache_dir: output folder: ``rois/<uid>.npy``, ``roi_datalist.json``, ``normalisation.json``,
            ``cache.json`` (counts, skipped records without identifiers).
        roi_size, roi_spacing: the ROI grid (voxels, mm).
        features, kernel_radius, bin_width: GLCM maps (default the four TP-SwAV features, radius 1, 25 HU bins).
        mask_dilation: voxels the body mask is dilated by for the masked kernel (so the cortical rim is in).
        hu_window: the fixed CT window mapped to [0, 1].
        unlabeled_limit: cache at most this many pre-training (``unlabeled``) vertebrae (a seeded subset).
        seed: seed of that subset.
        limit: at most this many records per split (tiny runs).
        workers: processes (one CT each at a time, one thread each); the output does not depend on it.
        progress: show a progress bar.
    """
    from monai_osteo.bundle.datalist import datalist_items
    from monai_osteo.transforms.texture import TP_SWAV_FEATURES

    features = tuple(features or TP_SWAV_FEATURES)
    out = Path(cache_dir)
    (out / "rois").mkdir(parents=True, exist_ok=True)
    per_split: dict[str, list[dict]] = {}
    for split in CACHE_SPLITS:
        try:
            items = datalist_items(datalist, [split])
        except (KeyError, ValueError):
            items = []
        if split == "unlabeled":
            items = _select_unlabeled(items, unlabeled_limit, seed)
        if limit is not None:
            items = items[:limit]
        for d in items:
            for key in ("image", "vertebrae", "level"):
                if key not in d:
                    raise ValueError(f"{datalist}: a {split} record has no {key!r} (keys {sorted(d)}); every vertebra "
                                     f"record needs the CT, its vertebra label map and its level (format: {DOCS}).")
        per_split[split] = items
    if not per_split.get("training"):
        raise ValueError(f"{datalist}: no 'training' records; fine-tuning needs labelled vertebrae (format: {DOCS}).")
    _check_splits(per_split, datalist)
    by_ct: dict[tuple[str, str], list[tuple[str, dict]]] = defaultdict(list)
    for split, items in per_split.items():
        for d in items:
            by_ct[(str(d["image"]), str(d["vertebrae"]))].append((split, d))
    settings = {"roi_size": tuple(int(s) for s in roi_size), "roi_spacing": float(roi_spacing), "features": features,
                "kernel_radius": int(kernel_radius), "bin_width": float(bin_width),
                "mask_dilation": int(mask_dilation), "out": str(out), "key": pseudonym_key(out)}
    jobs = [(ct, lab, records, settings) for (ct, lab), records in by_ct.items()]
    cached: dict[str, list[dict]] = {s: [] for s in per_split}
    skipped: list[dict] = []
    workers = max(1, min(int(workers), len(jobs)))
    if workers > 1:  # one process per CT at a time, one thread each; results come back in datalist order
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init)
        results = pool.imap(_cache_ct, jobs)
    else:
        pool, results = None, map(_cache_ct, jobs)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(jobs), desc="vertebra ROI + texture pool", leave=False)
    try:
        for done, bad in results:
            for split, record in done:
                cached[split].append(record)
            skipped += bad
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    counts = {s: len(v) for s, v in cached.items()}
    if not cached.get("training"):
        raise ValueError(f"{datalist}: no training vertebra could be cached ({len(skipped)} skipped; see the log).")
    # the pools of the normalisation: training and pre-training vertebrae, each once (L1-L4 of training patients
    # are usually in both lists)
    stats_records = list({r["uid"]: r for r in cached["training"] + cached.get("unlabeled", [])}.values())
    norm = pool_normalisation(out, stats_records, hu_window, features)
    norm["bmd_mean"], norm["bmd_std"] = _bmd_stats(cached["training"])
    atomic_write_json(out / "normalisation.json", norm)
    atomic_write_json(out / "cache.json", {"counts": counts, "skipped": skipped, "ct_volumes": len(by_ct)})
    roi_datalist = {**cached, "features": list(features), "roi_size": list(roi_size), "roi_spacing": roi_spacing}
    path = atomic_write_json(out / "roi_datalist.json", roi_datalist)  # last: a complete cache has it
    logger.info("vertebra cache: %s vertebrae cached in %s, %d skipped", counts, out, len(skipped))
    return str(path)


def _worker_init() -> None:
    torch.set_num_threads(1)


def _cache_ct(job: tuple) -> tuple[list[tuple[str, dict]], list[dict]]:
    """Read one CT + label map, extract its vertebrae's ROIs and write their pools; return (records, skipped)."""
    from monai_osteo.data.readers import LoadCTd
    from monai_osteo.transforms.texture import GLCMTextureMap
    from monai_osteo.transforms.vertebra import ExtractVertebraROI, VertebraROIError

    ct_path, label_path, records, st = job
    out = Path(st["out"])
    ct_name = os.path.basename(ct_path)
    reader = LoadCTd(keys=["image", "vertebrae"], label_keys="vertebrae", image_key="image")
    try:
        loaded = reader({"image": ct_path, "vertebrae": label_path})
        ct, labels = loaded["image"], loaded["vertebrae"]
    except Exception as e:  # noqa: BLE001 -- one bad file must not stop the cache; it is reported
        logger.warning("vertebra cache: %s cannot be read (%s); its %d vertebrae are skipped.", ct_name, e,
                       len(records))
        return [], [{"split": s, "level": d["level"], "reason": f"unreadable CT or label map: {type(e).__name__}"}
                    for s, d in records]
    levels = sorted({str(d["level"]) for _, d in records})
    extractor = ExtractVertebraROI(st["roi_size"], st["roi_spacing"], levels=levels)
    try:
        pairs = {str(roi.meta["level"]): (roi, mask) for roi, mask in extractor(ct, labels)}
    except VertebraROIError as e:
        logger.warning("vertebra cache: %s: %s; its vertebrae are skipped.", ct_name, e)
        return [], [{"split": s, "level": d["level"], "reason": "no usable vertebra in the label map"}
                    for s, d in records]
    texture = GLCMTextureMap(st["features"], kernel_radius=st["kernel_radius"], bin_width=st["bin_width"],
                             masked_kernel=True)
    ball = ndimage.generate_binary_structure(3, 1)
    done: dict[str, str] = {}  # uid -> file (a vertebra listed in two splits is computed once)
    cached, skipped = [], []
    for split, d in records:
        uid = vertebra_uid(d, st["key"])
        level = str(d["level"])
        if uid not in done:
            if level not in pairs:
                logger.warning("vertebra cache: %s: vertebra %s is absent or unusable (cut by the field of view, too "
                               "small or no body); skipped.", ct_name, level)
                skipped.append({"split": split, "level": level, "reason": "absent or unusable in the label map"})
                continue
            roi, mask = pairs[level]
            hu = roi.as_tensor()[0].float()
            body = ndimage.binary_dilation(mask.as_tensor()[0].numpy() > 0, ball, iterations=st["mask_dilation"])
            maps = torch.as_tensor(texture(hu[None], torch.as_tensor(body)[None]))
            pool = torch.cat([hu[None], maps.float()], dim=0).numpy().astype(np.float16)
            rel = f"rois/{uid}.npy"
            atomic_write(out / rel, lambda fh, a=pool: np.save(fh, a))
            done[uid] = rel
        cached.append((split, _record(d, done[uid], uid, split, st["key"])))
    return cached, skipped


_TARGET_KEYS = ("site", "dxa_device", "device_index", "level", "position", "label", "bmd", "t_score",
                "labeled")


def _record(d: Mapping, rel: str, uid: str, split: str, key: bytes) -> dict:
    r = {"image": rel, "uid": uid, "split": split, "patient": patient_uid(d.get("patient_id", d["image"]), key)}
    r.update({k: d[k] for k in _TARGET_KEYS if k in d})
    return r


def _bmd_stats(records: Sequence[Mapping]) -> tuple[float, float]:
    values = np.array([float(r["bmd"]) for r in records if r.get("bmd") is not None], dtype=float)
    if len(values) < 2:
        return 0.0, 1.0
    return float(values.mean()), float(values.std()) or 1.0


def pool_normalisation(cache_dir: str | os.PathLike, records: Sequence[Mapping], hu_window: Sequence[float],
                       features: Sequence[str]) -> dict:
    """Fixed per-channel affine of the pools: ``(x - subtrahend[c]) / divisor[c]``.

    Channel 0 (HU): ``hu_window`` -> [0, 1]. Texture channels: mean and std of the channel's finite values over
    ``records`` (the training and pre-training pools: training patients only), accumulated in float64.
    """
    lo, hi = float(hu_window[0]), float(hu_window[1])
    if not hi > lo:
        raise ValueError(f"hu_window must be (low, high) with high > low, got {hu_window!r}.")
    n = np.zeros(len(features))
    s1 = np.zeros(len(features))
    s2 = np.zeros(len(features))
    for r in records:
        pool = np.load(Path(cache_dir) / r["image"]).astype(np.float64)
        for c in range(len(features)):
            v = pool[c + 1][np.isfinite(pool[c + 1])]
            n[c] += v.size
            s1[c] += v.sum()
            s2[c] += (v * v).sum()
    mean = np.divide(s1, n, out=np.zeros_like(s1), where=n > 0)
    var = np.divide(s2, n, out=np.ones_like(s2), where=n > 0) - mean ** 2
    std = np.sqrt(np.maximum(var, 0.0))
    std[std == 0] = 1.0
    return {"channels": ["CT", *features], "subtrahend": [lo, *mean.tolist()], "divisor": [hi - lo, *std.tolist()],
            "hu_window": [lo, hi], "records": len(records)}

