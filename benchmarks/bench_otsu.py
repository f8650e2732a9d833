"""Images/s of the batched Otsu pseudo-mask vs a Python loop over skimage vs MONAI's ForegroundMask.

A batch of 64 float32 224² gray images (two gaussian classes with random shares, means and spreads, the
MedSASS input size) is thresholded by:

- ours: ``OtsuPseudoMask(batched=True)`` on the (64, 1, 224, 224) CPU tensor (one call, float32 0/1 masks);
- skimage: ``[img > skimage.filters.threshold_otsu(img) for img in batch]`` (bool masks);
- MONAI: ``monai.transforms.ForegroundMask(threshold="otsu")`` image by image (it marks ``img <= t``, so
  its masks are compared complemented).

The contenders run interleaved (one of each per round, after warm-up rounds) and the median round time is
reported, with the ratios ours/peer and the mask agreement (identical pixels and identical images).
``torch.set_num_threads`` is left at its default. With CUDA, ours is also timed on the GPU.

Run (glibc settings keep allocation timings stable)::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 PYTHONPATH=. \\
        python benchmarks/bench_otsu.py
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import monai
import numpy as np
import skimage
import torch
from _timing import median_round_times  # noqa: E402  (benchmarks/ is on sys.path)
from monai.transforms import ForegroundMask
from skimage.filters import threshold_otsu

from monai_osteo.transforms.otsu import OtsuPseudoMask


def bimodal_batch(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, 1, size, size) float32 images of two gaussian classes, ~[0, 1]."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        share, (a, b), s = rng.uniform(0.1, 0.9), np.sort(rng.uniform(0.1, 0.9, 2)), rng.uniform(0.03, 0.15, 2)
        fg = rng.random((size, size)) < share
        out.append(np.where(fg, rng.normal(b, s[1], (size, size)), rng.normal(a, s[0], (size, size))))
    return np.stack(out)[:, None].astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    env = {k: os.environ.get(k, "unset") for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    print(f"env: torch {torch.__version__} (threads {torch.get_num_threads()}), monai {monai.__version__}, "
          f"skimage {skimage.__version__}, numpy {np.__version__}, {platform.processor() or platform.machine()}, "
          f"cpus {os.cpu_count()}, {env}")

    images = bimodal_batch(args.batch, args.size)
    batch = torch.from_numpy(images)
    ours = OtsuPseudoMask(batched=True)
    monai_mask = ForegroundMask(threshold="otsu")
    contenders = {
        "ours (batched torch)": lambda: ours(batch),
        "skimage loop": lambda: [img[0] > threshold_otsu(img[0]) for img in images],
        "MONAI ForegroundMask loop": lambda: [monai_mask(img) for img in images],
    }
    times = median_round_times(contenders, args.rounds, args.warmup)
    print(f"\n{args.batch} x {args.size}² float32 on CPU, median of {args.rounds} interleaved rounds:")
    for name, t in times.items():
        print(f"  {name:28s} {t * 1e3:8.2f} ms/batch  {args.batch / t:9.0f} images/s")
    t_ours = times["ours (batched torch)"]
    print(f"  ratio ours/skimage: {times['skimage loop'] / t_ours:.2f}x   "
          f"ours/MONAI: {times['MONAI ForegroundMask loop'] / t_ours:.2f}x")

    mask = ours(batch).numpy()[:, 0] > 0
    ref = np.stack([img[0] > threshold_otsu(img[0]) for img in images])
    ref_monai = np.stack([np.asarray(monai_mask(img))[0] == 0 for img in images])
    for name, other in (("skimage", ref), ("MONAI (complemented)", ref_monai)):
        same_images = int(sum(np.array_equal(a, b) for a, b in zip(mask, other)))
        print(f"  masks vs {name}: {np.mean(mask == other) * 100:.4f}% identical pixels, "
              f"{same_images}/{args.batch} identical images")

    if torch.cuda.is_available():
        gpu = batch.cuda()

        def on_gpu():
            ours(gpu)
            torch.cuda.synchronize()

        t_gpu = median_round_times({"gpu": on_gpu}, args.rounds, args.warmup)["gpu"]
        agree = np.mean((ours(gpu).cpu().numpy()[:, 0] > 0) == mask) * 100
        print(f"  ours on {torch.cuda.get_device_name()}: {t_gpu * 1e3:.2f} ms/batch, {args.batch / t_gpu:.0f} "
              f"images/s ({times['skimage loop'] / t_gpu:.1f}x the skimage loop), {agree:.4f}% pixels = CPU masks")
    else:
        print("  CUDA: not available, GPU figure not measured")


if __name__ == "__main__":
    main()
