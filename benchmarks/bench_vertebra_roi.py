"""Vertebra ROIs of one 512 × 512 × 300 CT: ``ExtractVertebraROI`` vs a plain scipy.ndimage per-label loop.

The CT is a phantom patient (chest + abdomen protocol, 17 vertebrae, 0.7 mm pixels, 1.25 mm slices) placed in a
512 × 512 × 300 volume (air/fat around it, as a real CT's field of view). Ours: one ``find_objects`` pass, body by
opening + largest component on each vertebra's crop, own axes (kurtosis-minimal height axis), MONAI
``SpatialResample`` of a crop onto each 32³ @ 1.5 mm ROI + body mask. Peer, the loop a user would write with
scipy alone: per label, a whole-volume mask, ``argwhere`` + PCA axes, ``ndimage.map_coordinates`` (trilinear) of
the ROI from the whole volume and of the mask (nearest) — no body separation (it does less). Each contender runs
in its own process: peak memory = high-water RSS of its first call above the RSS before it (imports and the float32
volume both need are made first); times are medians of the following rounds.

Run (state the thread count)::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 OMP_NUM_THREADS=2 \\
        bash scripts/run.sh python benchmarks/bench_vertebra_roi.py --threads 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time

import numpy as np
import torch

SHAPE = (512, 512, 300)


def make_ct(folder: str) -> tuple[str, str, str]:
    from monai_osteo.data.phantoms.vertebra import render_patient, sample_patient

    rng = np.random.default_rng(7)
    p = sample_patient(rng, "P", "A", inplane_mm=(0.7, 0.7), slices=(1.25,), protocols={"chest_abdomen": 1.0})
    ct = render_patient(p, rng, fine_mm=0.7)
    n = ct.image.shape
    crop = tuple(slice(0, min(a, b)) for a, b in zip(n, SHAPE))
    vol = np.full(SHAPE, -1000, dtype=np.int16)
    lab = np.zeros(SHAPE, dtype=np.uint8)
    off = [(s - min(a, s)) // 2 for a, s in zip(n, SHAPE)]
    dst = tuple(slice(o, o + c.stop) for o, c in zip(off, crop))
    src = tuple(slice(n_i - c.stop, n_i) for n_i, c in zip(n, crop))  # keep the caudal end when z is cut
    vol[dst], lab[dst] = ct.image[src], ct.labels[src]
    affine = ct.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ (np.array(off) - np.array([s.start for s in src]))
    paths = [os.path.join(folder, f) for f in ("ct.npy", "lab.npy", "affine.npy")]
    for path, arr in zip(paths, (vol, lab, affine)):
        np.save(path, arr)
    return tuple(paths)


def prepare_ours(vol, affine):
    from monai.data import MetaTensor

    import monai_osteo.transforms.vertebra  # noqa: F401  (imports outside the measurement)

    return MetaTensor(torch.as_tensor(vol, dtype=torch.float32)[None], affine=torch.as_tensor(affine))


def ours(img, lab, affine):
    from monai_osteo.transforms.vertebra import ExtractVertebraROI

    return len(ExtractVertebraROI(32, 1.5, keep_problematic=True)(img, lab))


def prepare_peer(vol, affine):
    import scipy.ndimage  # noqa: F401

    return vol.astype(np.float32)


def peer(img, lab, affine):
    from scipy import ndimage

    n = 0
    for value in np.unique(lab)[1:]:
        mask = lab == value
        idx = np.argwhere(mask)
        pts = idx @ affine[:3, :3].T + affine[:3, 3]
        centre = pts.mean(axis=0)
        _, vecs = np.linalg.eigh(np.cov(pts.T))
        axes = vecs[:, ::-1]
        grid = np.stack(np.meshgrid(*[np.arange(32)] * 3, indexing="ij"), 0).reshape(3, -1)
        world = axes @ ((grid - 15.5) * 1.5) + centre[:, None]
        coords = np.linalg.solve(affine[:3, :3], world - affine[:3, 3:4])
        ndimage.map_coordinates(img, coords, order=1, cval=-1024.0)
        ndimage.map_coordinates(mask.astype(np.uint8), coords, order=0)
        n += 1
    return n


def _status(key: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))


def _child(name, paths, threads, rounds, queue):
    torch.set_num_threads(threads)
    vol, lab, affine = (np.load(p) for p in paths)
    prepare, fn = {"ours": (prepare_ours, ours), "peer": (prepare_peer, peer)}[name]
    img = prepare(vol, affine)  # imports and the float32 volume both need, outside the measurement
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark (VmHWM) to the current RSS
        f.write("5")
    count = fn(img, lab, affine)  # first call: its peak is the extraction's memory
    peak = _status("VmHWM") - before
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        count = fn(img, lab, affine)
        times.append(time.perf_counter() - start)
    queue.put((float(np.median(times)), count, peak))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print(f"torch {torch.__version__}, threads {args.threads}, CT {SHAPE}")
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_ct(tmp)
        results = {}
        for name in ("ours", "peer"):
            q = ctx.Queue()
            proc = ctx.Process(target=_child, args=(name, paths, args.threads, args.rounds, q))
            proc.start()
            results[name] = q.get()
            proc.join()
    for name, (t, count, peak) in results.items():
        print(f"{name}: {count} vertebrae in {t:.3f} s ({t / max(count, 1) * 1000:.0f} ms each), "
              f"peak memory +{peak:.0f} MiB")
    print(f"ratio (peer time / ours): {results['peer'][0] / results['ours'][0]:.2f}x; "
          f"peak memory ours / peer: {results['ours'][2] / max(results['peer'][2], 1e-9):.2f}")


if __name__ == "__main__":
    main()
