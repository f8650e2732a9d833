"""Texture-pool cache of one 64³ vertebra ROI (4 GLCM maps) vs pyradiomics' voxel-based extraction on the same ROI,
and the paper-size cohort's cache time extrapolated from a measured sample (vertebra_osteo bundle, ``cache.json``).

The ROI: a phantom patient's CT (``monai_osteo.data.phantoms.vertebra``, ``quick`` preset geometry) read with
``LoadCTd``, its L1 extracted with ``ExtractVertebraROI((64, 64, 64), 0.75)`` -> (HU ROI, body mask). Per ROI, ours
is what ``monai_osteo.bundle.vertebra_cache.build_roi_cache`` computes: body mask dilated by 2 voxels (6-connected),
``GLCMTextureMap`` (Autocorrelation, JointAverage, Contrast, DifferenceAverage; kernel radius 1, bin width 25,
masked kernel; float32) and the float16 pool ``(1 + 4, 64, 64, 64)``; the pool is checked to be byte-identical to
the one ``build_roi_cache`` writes. Timed: median of interleaved rounds (dilation included).

Peer: pyradiomics ``RadiomicsFeatureExtractor(voxelBased=True)`` with the same settings (``kernelRadius=1``,
``binWidth=25``, ``maskedKernel=True``, ``force2D=False``, distance 1, the 13 3-D directions, symmetric GLCM, no
weighting, ``voxelBatch`` left at its default -1 = all voxels at once) on SimpleITK images of the same arrays (spacing
0.75 mm), single-threaded (it is), in a child process (its peak memory is reported). It first runs on a centred
sub-ROI of the mask; if the full ROI is predicted to take < ``--pyradiomics-budget`` s (default 300) and to fit in
memory, it runs once on the full ROI (measured); otherwise its time is extrapolated per mask voxel (printed as such).
Agreement: max relative difference of our float64 and float32 maps from pyradiomics' on the voxels where both have a
value.

Cohort: the whole per-vertebra cache cost (CT read, ROI extraction of every visible level, pool, float16 ``.npy``
write) is measured on ``--sample`` phantom CTs, and ``build_roi_cache`` itself is run on them as a check; both are
extrapolated to the paper's Table 1 cohort (3,897 CTs, 8,609 labelled + 30,256 unlabelled vertebrae) on 2 cores
(2 // threads worker processes of ``--threads`` threads for ours, 2 single-threaded ones for pyradiomics; linear
scaling assumed; one pool per vertebra counted, an upper bound where labelled vertebrae are also pre-training ones,
which the cache computes once). pyradiomics per vertebra = its measured time per mask voxel x the sample's mean
dilated-mask size. Phantom CTs have a small field of view around the spine, so the read + extraction of one
512 x 512 x 300 CT (the phantom placed in soft-tissue noise, gzip NIfTI) is measured too and a second extrapolation
uses it.

Run (state the thread count)::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 OMP_NUM_THREADS=1 \\
        bash scripts/run.sh python benchmarks/bench_texture_pool.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _timing import median_round_times  # noqa: E402  (benchmarks/ is on sys.path)
from scipy import ndimage

from monai_osteo.transforms import TP_SWAV_FEATURES, ExtractVertebraROI, GLCMTextureMap

ROI_SIZE, ROI_SPACING, DILATION, BIN_WIDTH, RADIUS = (64, 64, 64), 0.75, 2, 25.0, 1
PAPER = {"ct": 3897, "labelled": 8609, "unlabelled": 30256}  # Table 1
CLINICAL_SHAPE = (512, 512, 300)
BALL = ndimage.generate_binary_structure(3, 1)


def pool_of(roi, mask, texture: GLCMTextureMap) -> np.ndarray:
    """The cached pool of one ROI, computed as ``build_roi_cache`` does: float16 (1 + F, *roi_size)."""
    hu = roi.as_tensor()[0].float()
    body = ndimage.binary_dilation(mask.as_tensor()[0].numpy() > 0, BALL, iterations=DILATION)
    maps = torch.as_tensor(texture(hu[None], torch.as_tensor(body)[None]))
    return torch.cat([hu[None], maps.float()], dim=0).numpy().astype(np.float16)


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))


def _pyradiomics_child(image: np.ndarray, mask: np.ndarray, voxel_batch: int | None, queue) -> None:
    """(child process) pyradiomics voxel-based maps (F, *shape), NaN where none; put (maps, seconds, peak MiB)."""
    import radiomics
    import SimpleITK as sitk
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    radiomics.setVerbosity(logging.ERROR)
    settings = {"binWidth": BIN_WIDTH, "kernelRadius": RADIUS, "maskedKernel": True, "force2D": False,
                "distances": [1], "symmetricalGLCM": True, "weightingNorm": None, "label": 1,
                "initValue": float("nan"), "additionalInfo": False}
    if voxel_batch is not None:
        settings["voxelBatch"] = voxel_batch
    extractor = RadiomicsFeatureExtractor(**settings)
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(glcm=list(TP_SWAV_FEATURES))
    img, msk = sitk.GetImageFromArray(image), sitk.GetImageFromArray(mask.astype(np.uint8))
    for x in (img, msk):
        x.SetSpacing((ROI_SPACING,) * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of pair-less kernels
        start = time.perf_counter()
        result = extractor.execute(img, msk, voxelBased=True)
        elapsed = time.perf_counter() - start
    out = np.full((len(TP_SWAV_FEATURES), *image.shape), np.nan)
    for k, name in enumerate(TP_SWAV_FEATURES):
        cropped = result[f"original_glcm_{name}"]  # cropped to the mask's box + radius; origin in mm
        values = sitk.GetArrayFromImage(cropped)
        start_idx = [int(round(o / ROI_SPACING)) for o in cropped.GetOrigin()][::-1]
        out[(k, *(slice(s, s + n) for s, n in zip(start_idx, values.shape)))] = values
    out[:, mask == 0] = np.nan
    queue.put((out, elapsed, _peak_rss_mib()))


def run_pyradiomics(image: np.ndarray, mask: np.ndarray, voxel_batch: int | None = None):
    """pyradiomics in a fresh process: (maps, seconds, peak RSS MiB), or None if the process died (e.g. OOM)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_pyradiomics_child, args=(image, mask, voxel_batch, queue))
    proc.start()
    while proc.is_alive() or not queue.empty():
        try:
            result = queue.get(timeout=1.0)
            proc.join()
            return result
        except Exception:  # noqa: BLE001 -- queue.Empty while it runs
            continue
    print(f"  pyradiomics process died (exit code {proc.exitcode}; out of memory?)")
    return None


def max_rel(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Max relative difference where both are finite, and the number of such values."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), 1e-300))), int(both.sum())


def n_bins(values: np.ndarray) -> int:
    """Gray levels pyradiomics allocates its GLCMs with (bin width from the ROI minimum)."""
    return int(np.floor(values.max() / BIN_WIDTH) - np.floor(values.min() / BIN_WIDTH) + 1)


def available_mib() -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("MemAvailable"))


def make_sample(folder: Path, n: int) -> tuple[Path, dict]:
    """``n`` phantom patients of the quick preset's geometry (site A training); datalist path and its content."""
    from monai_osteo.data.phantoms.vertebra import generate_vertebra_cohort

    path = generate_vertebra_cohort(folder, preset="quick", patients={"A": (n, 0, 0)}, workers=1, progress=False)
    return path, json.loads(Path(path).read_text())


def cache_sample(folder: Path, patients: list[dict], texture: GLCMTextureMap, out: Path) -> dict:
    """One pass of the per-CT cache loop over the sample, timed per stage (s, summed over the sample)."""
    from monai_osteo.data.readers import LoadCTd
    from monai_osteo.io import atomic_write

    reader = LoadCTd(keys=["image", "vertebrae"], label_keys="vertebrae", image_key="image")
    t = {"read": 0.0, "extract": 0.0, "pool": 0.0, "write": 0.0, "vertebrae": 0, "mask_voxels": [], "shapes": []}
    for p in patients:
        s0 = time.perf_counter()
        d = reader({"image": str(folder / p["image"]), "vertebrae": str(folder / p["vertebrae"])})
        s1 = time.perf_counter()
        pairs = ExtractVertebraROI(ROI_SIZE, ROI_SPACING, levels=sorted(p["levels"]))(d["image"], d["vertebrae"])
        s2 = time.perf_counter()
        t["read"], t["extract"] = t["read"] + s1 - s0, t["extract"] + s2 - s1
        t["shapes"].append(tuple(d["image"].shape[1:]))
        for roi, mask in pairs:
            s0 = time.perf_counter()
            pool = pool_of(roi, mask, texture)
            s1 = time.perf_counter()
            atomic_write(out / f"{p['patient_id']}_{roi.meta['level']}.npy", lambda fh, a=pool: np.save(fh, a))
            t["pool"], t["write"] = t["pool"] + s1 - s0, t["write"] + time.perf_counter() - s1
            t["vertebrae"] += 1
            t["mask_voxels"].append(int(np.isfinite(pool[1:]).any(0).sum()))
    return t


def clinical_ct(folder: Path, patient: dict, out: Path) -> tuple[str, str]:
    """The phantom CT placed in a 512 x 512 x 300 volume (air, an elliptic torso of ~40 +- 20 HU tissue), gzip NIfTI."""
    import nibabel as nib

    from monai_osteo.data.phantoms.vertebra.cohort import write_nifti

    ct, lab = nib.load(folder / patient["image"]), nib.load(folder / patient["vertebrae"])
    src, labels, affine = np.asarray(ct.dataobj), np.asarray(lab.dataobj), ct.affine.copy()
    rng = np.random.default_rng(0)
    vol = np.full(CLINICAL_SHAPE, -1000, np.int16)
    xx, yy = np.meshgrid(*(np.linspace(-1, 1, s) for s in CLINICAL_SHAPE[:2]), indexing="ij")
    torso = (xx / 0.9) ** 2 + (yy / 0.7) ** 2 < 1
    vol[torso] = np.round(rng.normal(40, 20, (int(torso.sum()), CLINICAL_SHAPE[2]))).astype(np.int16)
    lab_vol = np.zeros(CLINICAL_SHAPE, np.uint8)
    n = [min(a, b) for a, b in zip(src.shape, CLINICAL_SHAPE)]
    off = [(s - c) // 2 for s, c in zip(CLINICAL_SHAPE, n)]
    dst = tuple(slice(o, o + c) for o, c in zip(off, n))
    vol[dst], lab_vol[dst] = src[tuple(slice(0, c) for c in n)], labels[tuple(slice(0, c) for c in n)]
    affine[:3, 3] -= affine[:3, :3] @ np.array(off, float)
    paths = str(out / "clinical_ct.nii.gz"), str(out / "clinical_lab.nii.gz")
    write_nifti(Path(paths[0]), vol, affine)
    write_nifti(Path(paths[1]), lab_vol, affine)
    return paths


def time_read_extract(paths: tuple[str, str], levels: list[str], rounds: int) -> tuple[float, float, int]:
    """Median read and extraction time (s) of one CT, and the number of ROIs extracted."""
    from monai_osteo.data.readers import LoadCTd

    reader = LoadCTd(keys=["image", "vertebrae"], label_keys="vertebrae", image_key="image")
    reads, extracts, count = [], [], 0
    for _ in range(rounds):
        s0 = time.perf_counter()
        d = reader({"image": paths[0], "vertebrae": paths[1]})
        s1 = time.perf_counter()
        count = len(ExtractVertebraROI(ROI_SIZE, ROI_SPACING, levels=levels)(d["image"], d["vertebrae"]))
        reads.append(s1 - s0)
        extracts.append(time.perf_counter() - s1)
    return float(np.median(reads)), float(np.median(extracts)), count


def hours(per_ct: float, per_vertebra: float, workers: int = 2) -> float:
    """Paper cohort cache time (h) on ``workers`` parallel processes: CT reads + per-vertebra work."""
    n_vert = PAPER["labelled"] + PAPER["unlabelled"]
    return (PAPER["ct"] * per_ct + n_vert * per_vertebra) / workers / 3600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads of ours (pyradiomics is single-threaded)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--sample", type=int, default=3, help="phantom CTs of the cohort sample")
    ap.add_argument("--sub-roi", type=int, default=24, help="edge (voxels) of pyradiomics' first, centred sub-ROI")
    ap.add_argument("--pyradiomics-budget", type=float, default=300.0, help="s; above it the full ROI is extrapolated")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("monai_osteo").setLevel(logging.ERROR)
    import monai
    import radiomics

    from monai_osteo.bundle.datalist import datalist_items
    from monai_osteo.bundle.vertebra_cache import build_roi_cache, pseudonym_key, vertebra_uid
    from monai_osteo.data.readers import LoadCTd

    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print(f"env: torch {torch.__version__} (threads {torch.get_num_threads()}), monai {monai.__version__}, pyradiomics "
          f"{radiomics.__version__}, numpy {np.__version__}, {platform.processor() or platform.machine()}, cpus "
          f"{os.cpu_count()}, load average {os.getloadavg()[0]:.2f} (other processes share these cores)")
    print(f"settings: {', '.join(TP_SWAV_FEATURES)} | kernel radius {RADIUS}, bin width {BIN_WIDTH:g}, distance 1, "
          f"13 directions, symmetric, masked kernel on the body mask dilated by {DILATION} voxels | ROI "
          f"{'x'.join(map(str, ROI_SIZE))} @ {ROI_SPACING} mm")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dl_path, dl = make_sample(tmp / "cohort", args.sample)
        folder = dl_path.parent
        patients = dl["patients"]
        first = next(p for p in patients if "L1" in p["levels"])
        texture = GLCMTextureMap(TP_SWAV_FEATURES, kernel_radius=RADIUS, bin_width=BIN_WIDTH, masked_kernel=True)

        # --- one ROI: ours vs pyradiomics
        reader = LoadCTd(keys=["image", "vertebrae"], label_keys="vertebrae", image_key="image")
        d = reader({"image": str(folder / first["image"]), "vertebrae": str(folder / first["vertebrae"])})
        roi, mask = ExtractVertebraROI(ROI_SIZE, ROI_SPACING, levels=["L1"])(d["image"], d["vertebrae"])[0]
        image = roi.as_tensor()[0].numpy().astype(np.float32)
        body = ndimage.binary_dilation(mask.as_tensor()[0].numpy() > 0, BALL, iterations=DILATION)
        x, m = torch.from_numpy(image)[None], torch.from_numpy(body)[None]
        times = median_round_times({"pool": lambda: pool_of(roi, mask, texture), "maps": lambda: texture(x, m)},
                                   args.rounds, warmup=2)
        t_ours, t_maps = times["pool"], times["maps"]
        n_mask = int(body.sum())
        print(f"\nROI: L1 of phantom CT {tuple(d['image'].shape[1:])} @ {first['spacing']} mm; body mask "
              f"{int((mask.as_tensor() > 0).sum())} voxels, dilated {n_mask}; HU in it "
              f"{image[body].min():.0f}..{image[body].max():.0f} ({n_bins(image[body])} bins of {BIN_WIDTH:g})")
        print(f"ours (dilation + 4 maps float32 + float16 pool), median of {args.rounds}: {t_ours * 1000:.1f} ms per "
              f"ROI = {n_mask / t_ours:,.0f} mask voxels/s; the 4 maps alone (dilated mask given, as to pyradiomics) "
              f"{t_maps * 1000:.1f} ms (torch threads {torch.get_num_threads()})")

        centre = np.round(ndimage.center_of_mass(body)).astype(int)
        half = args.sub_roi // 2
        box = tuple(slice(max(c - half, 0), max(c - half, 0) + args.sub_roi) for c in centre)
        sub_img, sub_mask = image[box], body[box]
        n_sub = int(sub_mask.sum())
        sub = run_pyradiomics(np.ascontiguousarray(sub_img), np.ascontiguousarray(sub_mask))
        if sub is None:
            raise SystemExit("pyradiomics failed on the sub-ROI; nothing to compare.")
        ref_sub, t_sub, rss_sub = sub
        rate = n_sub / t_sub
        print(f"pyradiomics, centred {args.sub_roi}³ sub-ROI ({n_sub} mask voxels, {n_bins(sub_img[sub_mask])} bins): "
              f"{t_sub:.1f} s = {rate:,.0f} voxels/s, peak RSS {rss_sub:,.0f} MiB")
        for dtype in ("float64", "float32"):
            ours_sub = GLCMTextureMap(TP_SWAV_FEATURES, RADIUS, BIN_WIDTH, masked_kernel=True, dtype=dtype)(
                torch.from_numpy(sub_img)[None], torch.from_numpy(sub_mask)[None]).numpy()
            err, n_common = max_rel(ours_sub, ref_sub)
            print(f"  agreement (sub-ROI), ours {dtype} vs pyradiomics: max rel. diff {err:.1e} on {n_common} values; "
                  f"NaN pattern {'identical' if np.array_equal(np.isnan(ours_sub), np.isnan(ref_sub)) else 'DIFFERS'}")

        t_predict = t_sub * n_mask / n_sub
        # its voxelBatch=-1 GLCM array: (voxels, bins, bins, 13) float64; peak RSS ~3.5x it (delete, transpose, ...)
        glcm_mib = n_mask * n_bins(image[body]) ** 2 * 13 * 8 / 2**20
        fits = 3.5 * glcm_mib < 0.8 * available_mib()
        measured = None
        if t_predict < args.pyradiomics_budget and fits:
            print(f"pyradiomics, full ROI (predicted {t_predict:.0f} s, GLCM array {glcm_mib:,.0f} MiB; "
                  f"{available_mib():,.0f} MiB available): running once ...")
            measured = run_pyradiomics(image, body)
        else:
            print(f"pyradiomics, full ROI not run: predicted {t_predict:.0f} s (budget {args.pyradiomics_budget:.0f} "
                  f"s), GLCM array {glcm_mib:,.0f} MiB x ~3.5 vs {available_mib():,.0f} MiB available")
        if measured is not None:
            ref, t_pyrad, rss = measured
            how = f"MEASURED on the full 64³ ROI ({n_mask} mask voxels, voxelBatch default), peak RSS {rss:,.0f} MiB"
            full64 = GLCMTextureMap(TP_SWAV_FEATURES, RADIUS, BIN_WIDTH, masked_kernel=True, dtype="float64")(
                x, m).numpy()
            pool16 = pool_of(roi, mask, texture)  # the cached pool (float16)
            maps32 = texture(x, m).numpy()
            for label, ours_map in (("float64", full64), ("float32", maps32), ("float16 pool", pool16[1:])):
                err, n_common = max_rel(ours_map, ref)
                print(f"  agreement (full ROI), ours {label} vs pyradiomics: max rel. diff {err:.1e} on {n_common} "
                      f"values; NaN pattern "
                      f"{'identical' if np.array_equal(np.isnan(ours_map), np.isnan(ref)) else 'DIFFERS'}")
        else:
            t_pyrad = t_predict
            how = f"EXTRAPOLATED per mask voxel from the {args.sub_roi}³ sub-ROI ({rate:,.0f} voxels/s x {n_mask})"
        print(f"\npyradiomics per ROI: {t_pyrad:.1f} s ({how})")
        print(f"ours per ROI:        {t_ours * 1000:.1f} ms (torch threads {torch.get_num_threads()})")
        print(f"RATIO pyradiomics / ours: {t_pyrad / t_ours:,.0f}x (target >= 1000x); maps alone "
              f"{t_pyrad / t_maps:,.0f}x")

        # --- check: our pool is the one build_roi_cache writes
        cache_dir = tmp / "cache"
        start = time.perf_counter()
        build_roi_cache(dl_path, cache_dir, ROI_SIZE, ROI_SPACING, progress=False)
        t_build = time.perf_counter() - start
        n_cached = len(list((cache_dir / "rois").glob("*.npy")))
        rec = next(r for r in datalist_items(dl_path, ["unlabeled"])  # absolute paths, as the cache hashes them
                   if r["patient_id"] == first["patient_id"] and r["level"] == "L1")
        cached = np.load(cache_dir / "rois" / f"{vertebra_uid(rec, pseudonym_key(cache_dir))}.npy")
        same = np.array_equal(cached.view(np.uint16), pool_of(roi, mask, texture).view(np.uint16))
        print(f"\ncheck: this pool == build_roi_cache's L1 pool (bitwise): {same}")

        # --- cohort sample: the whole per-vertebra cache cost
        stages = [cache_sample(folder, patients, texture, tmp / f"sample{r}") for r in range(3)]
        med = {k: float(np.median([s[k] for s in stages])) for k in ("read", "extract", "pool", "write")}
        n_v, n_ct = stages[0]["vertebrae"], len(patients)
        mean_mask = float(np.mean(stages[0]["mask_voxels"]))
        per_ct, per_v = med["read"] / n_ct, (med["extract"] + med["pool"] + med["write"]) / n_v
        print(f"\ncohort sample: {n_ct} phantom CTs of the quick preset's geometry {stages[0]['shapes']}, {n_v} "
              f"vertebrae (every visible level), ROI 64³ @ 0.75 mm, median of 3 passes, torch threads "
              f"{torch.get_num_threads()}:")
        print(f"  per CT: read {per_ct * 1000:.0f} ms; per vertebra: extraction {med['extract'] / n_v * 1000:.0f} ms, "
              f"pool {med['pool'] / n_v * 1000:.0f} ms, float16 .npy write {med['write'] / n_v * 1000:.1f} ms "
              f"(mean dilated mask {mean_mask:,.0f} voxels)")
        print(f"  whole cost per vertebra, read amortised ({n_v / n_ct:.1f} vertebrae/CT): "
              f"{(med['read'] + med['extract'] + med['pool'] + med['write']) / n_v * 1000:.0f} ms; build_roi_cache "
              f"itself on the sample: {t_build:.2f} s for {n_cached} pools ({t_build / n_cached * 1000:.0f} ms each, "
              f"normalisation pass and first-call warm-up included)")

        clin = clinical_ct(folder, first, tmp)
        clin_read, clin_extract, clin_n = time_read_extract(clin, sorted(first["levels"]), rounds=2)
        print(f"  one {'x'.join(map(str, CLINICAL_SHAPE))} CT (phantom in soft-tissue noise, gzip NIfTI): read "
              f"{clin_read:.2f} s, extraction of {clin_n} ROIs {clin_extract:.2f} s "
              f"({clin_extract / max(clin_n, 1) * 1000:.0f} ms each)")

        n_vert = PAPER["labelled"] + PAPER["unlabelled"]
        t_pyrad_v = t_pyrad / n_mask * mean_mask  # pyradiomics per vertebra of the sample's mean mask size
        clin_per_v = clin_extract / max(clin_n, 1) + (med["pool"] + med["write"]) / n_v
        print(f"\npaper cohort (Table 1: {PAPER['ct']:,} CTs, {PAPER['labelled']:,} labelled + "
              f"{PAPER['unlabelled']:,} unlabelled = {n_vert:,} vertebrae), on 2 cores:")
        w = max(1, 2 // torch.get_num_threads())
        print(f"  ours ({w} worker(s) x {torch.get_num_threads()} thread(s)), phantom-size CTs: "
              f"{hours(per_ct, per_v, w):6.2f} h")
        print(f"  ours ({w} worker(s) x {torch.get_num_threads()} thread(s)), 512x512x300 CTs:  "
              f"{hours(clin_read, clin_per_v, w):6.2f} h   (pools alone: {hours(0, med['pool'] / n_v, w):.2f} h)")
        pyr_v = per_v - med["pool"] / n_v + t_pyrad_v
        pyr_clin_v = clin_per_v - med["pool"] / n_v + t_pyrad_v
        print(f"  pyradiomics instead of our pool (2 single-threaded workers; {t_pyrad_v:.0f} s per vertebra = "
              f"{t_pyrad / n_mask * 1000:.2f} ms per mask voxel x {mean_mask:,.0f}): phantom-size CTs "
              f"{hours(per_ct, pyr_v):,.0f} h ({hours(per_ct, pyr_v) / 24:,.1f} days), 512x512x300 CTs "
              f"{hours(clin_read, pyr_clin_v):,.0f} h")


if __name__ == "__main__":
    main()
