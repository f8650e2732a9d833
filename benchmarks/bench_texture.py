"""Voxels/s of GLCMTextureMap vs pyradiomics' voxel-based extraction vs flash-radiomics' CPU feature maps.

Same settings for all (the TP-SwAV texture pool, paper §2.1): Autocorrelation, JointAverage, Contrast,
DifferenceAverage; kernel radius 2, bin width 25, distance 1, all directions (4 in 2-D, 13 in 3-D), symmetric
GLCM, no weighting, masked kernel, a mask covering the whole image (every voxel gets a value). Inputs are
CT-like int16 images (smoothed gaussian noise, 300 +- 150 HU, ~57 gray levels): a 2-D 224² slice and a 3-D
64³ volume.

- ours: ``GLCMTextureMap`` on a CPU tensor, float32 (default) and float64 (equal to pyradiomics to
  ~1e-15), median of interleaved rounds; on CUDA too when available;
- pyradiomics (``RadiomicsFeatureExtractor(voxelBased=True)``, single-threaded by design): on a 64² crop of
  the 2-D image and a 16³ crop of the volume, reported per voxel;
  ``voxelBatch=1024`` bounds its memory (it does not change these maps without a mask edge);
- flash-radiomics (``RadiomicsFeatureExtractor(backend="cpu", num_threads=torch threads)``): the same
  images and threads; timed is ``extract_from_preprocessed`` on a ``preprocess_case(..., spatialMode=True)`` (image
  loading/validation and its HDF5 export excluded). It differs from ours only in API (SimpleITK in/out).

Agreement with pyradiomics (max relative error on the crops) and with flash-radiomics is printed too. Then
the peak memory of a 512x512x300 int16 CT volume (whole volume, same settings, default chunking) is measured
in a fresh subprocess per dtype with glibc's default allocator settings (the MALLOC_ settings above keep
freed memory in the heap and would inflate it): peak RSS (``ru_maxrss``), which includes ~0.8 GiB of Python,
torch and MONAI.

Run (glibc settings keep allocation timings stable)::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 PYTHONPATH=. \\
        python benchmarks/bench_texture.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time

import monai
import numpy as np
import torch
from _timing import median_round_times  # noqa: E402  (benchmarks/ is on sys.path)

from monai_osteo.transforms.texture import TP_SWAV_FEATURES, GLCMTextureMap

SETTINGS = {
    "binWidth": 25, "kernelRadius": 2, "maskedKernel": True, "distances": [1], "symmetricalGLCM": True,
    "weightingNorm": None, "force2D": False, "label": 1, "initValue": float("nan"), "additionalInfo": False,
}


def ct_like(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """int16 CT-like texture: gaussian noise smoothed (sigma 1.5 voxels), scaled to ~300 +- 150 HU."""
    from scipy.ndimage import gaussian_filter

    x = gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.5)
    return np.round(300 + 150 * x / x.std()).astype(np.int16)


def pyradiomics_maps(image: np.ndarray) -> tuple[np.ndarray, float]:
    """pyradiomics voxel-based maps (F, *shape) of the whole image and the time of one extraction (s)."""
    import radiomics
    import SimpleITK as sitk
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    radiomics.setVerbosity(logging.ERROR)
    extractor = RadiomicsFeatureExtractor(**SETTINGS, voxelBatch=1024)
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(glcm=list(TP_SWAV_FEATURES))
    img, mask = sitk.GetImageFromArray(image), sitk.GetImageFromArray(np.ones(image.shape, np.uint8))
    start = time.perf_counter()
    result = extractor.execute(img, mask, voxelBased=True)
    elapsed = time.perf_counter() - start
    return np.stack([sitk.GetArrayFromImage(result[f"original_glcm_{f}"]) for f in TP_SWAV_FEATURES]), elapsed


def flash_contender(image: np.ndarray, threads: int):
    """A callable running flash-radiomics' CPU voxel maps on ``image``, and one that returns the maps."""
    import SimpleITK as sitk
    from flash_radiomics.featureextractor import RadiomicsFeatureExtractor

    logging.getLogger("flash_radiomics").setLevel(logging.ERROR)
    extractor = RadiomicsFeatureExtractor(backend="cpu", num_threads=threads, **SETTINGS, voxelBatch=-1)
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(glcm=list(TP_SWAV_FEATURES))
    img, mask = sitk.GetImageFromArray(image), sitk.GetImageFromArray(np.ones(image.shape, np.uint8))
    prepared = extractor.preprocess_case(img, mask, spatialMode=True)

    def maps() -> np.ndarray:
        out = extractor.extract_from_preprocessed(prepared)
        return np.stack([sitk.GetArrayFromImage(out[f"original_glcm_{f}"]) for f in TP_SWAV_FEATURES])

    return lambda: extractor.extract_from_preprocessed(prepared), maps


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """Max relative difference where both are finite."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), 1e-300)))


def bench_case(name: str, image: np.ndarray, crop: tuple[slice, ...], rounds: int, flash_rounds: int) -> None:
    """Time every contender on one image and print voxels/s and ratios."""
    n, n_crop = image.size, image[crop].size
    ours32, ours64 = GLCMTextureMap(kernel_radius=2), GLCMTextureMap(kernel_radius=2, dtype="float64")
    x = torch.from_numpy(image)[None]
    times = median_round_times({"f32": lambda: ours32(x), "f64": lambda: ours64(x)}, rounds, warmup=2)
    ref, t_pyrad = pyradiomics_maps(image[crop])
    rates = {"ours float32": n / times["f32"], "ours float64": n / times["f64"], "pyradiomics": n_crop / t_pyrad}
    run_flash, flash_maps = flash_contender(image, torch.get_num_threads())
    rates["flash-radiomics"] = n / median_round_times({"flash": run_flash}, flash_rounds, warmup=1)["flash"]
    print(f"\n{name} int16 {'x'.join(map(str, image.shape))} ({n} voxels; pyradiomics on "
          f"{'x'.join(str(s.stop - s.start) for s in crop)} = {n_crop} voxels):")
    for label, rate in rates.items():
        print(f"  {label:16s} {rate:14,.0f} voxels/s")
    for label in ("ours float32", "ours float64"):
        print(f"  ratio {label}/pyradiomics: {rates[label] / rates['pyradiomics']:10,.0f}x   "
              f"{label}/flash-radiomics: {rates[label] / rates['flash-radiomics']:8,.1f}x")
    crop_maps = ours64(x[(slice(None), *crop)]).numpy()
    full64 = ours64(x).numpy()
    print(f"  max rel. error vs pyradiomics (crop): float64 {max_rel(crop_maps, ref):.1e}, float32 "
          f"{max_rel(ours32(x[(slice(None), *crop)]).numpy(), ref):.1e};  flash-radiomics vs ours float64: "
          f"{max_rel(flash_maps(), full64):.1e}")
    if torch.cuda.is_available():
        gpu = x.cuda()

        def on_gpu(t=ours32):
            t(gpu)
            torch.cuda.synchronize()

        t_gpu = median_round_times({"gpu": on_gpu}, rounds, warmup=2)["gpu"]
        print(f"  ours float32 on {torch.cuda.get_device_name()}: {n / t_gpu:,.0f} voxels/s "
              f"({n / t_gpu / rates['pyradiomics']:,.0f}x pyradiomics)")
    else:
        print("  CUDA: not available, GPU figure not measured")


def peak_memory_child(shape: list[int], dtype: str) -> None:
    """(subprocess) compute the maps of a CT-like volume and print JSON: RSS before, peak RSS, time."""
    volume = torch.from_numpy(np.random.default_rng(0).integers(-200, 1200, shape, dtype=np.int16))[None]
    with open("/proc/self/statm") as f:  # current RSS (pages), before the call
        before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    start = time.perf_counter()
    maps = GLCMTextureMap(kernel_radius=2, dtype=dtype)(volume)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(json.dumps({"rss_before_gib": before, "peak_gib": peak, "seconds": elapsed,
                      "output_gib": maps.numel() * maps.element_size() / 2**30}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--flash-rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and flash threads (default: torch's)")
    parser.add_argument("--memory-shape", type=int, nargs="+", default=[512, 512, 300])
    parser.add_argument("--peak-memory-child", choices=["float32", "float64"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak_memory_child:
        peak_memory_child(args.memory_shape, args.peak_memory_child)
        return

    import flash_radiomics
    import radiomics

    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    env = {k: os.environ.get(k, "unset") for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    print(f"env: torch {torch.__version__} (threads {torch.get_num_threads()}), monai {monai.__version__}, "
          f"pyradiomics {radiomics.__version__}, flash-radiomics {flash_radiomics.__version__}, numpy "
          f"{np.__version__}, {platform.processor() or platform.machine()}, cpus {os.cpu_count()}, {env}")
    print("settings: features", ", ".join(TP_SWAV_FEATURES), "| kernel radius 2, bin width 25, distance 1, "
          "symmetric, masked kernel, whole-image mask")

    bench_case("2-D", ct_like((224, 224)), (slice(80, 144), slice(80, 144)), args.rounds, args.flash_rounds)
    bench_case("3-D", ct_like((64, 64, 64), seed=1), (slice(24, 40),) * 3, args.rounds, max(1, args.flash_rounds - 2))

    shape = "x".join(map(str, args.memory_shape))
    for dtype in ("float32", "float64"):
        out = subprocess.run(
            [sys.executable, __file__, "--peak-memory-child", dtype, "--threads", str(torch.get_num_threads()),
             "--memory-shape", *map(str, args.memory_shape)],
            capture_output=True, text=True, check=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")},  # glibc defaults
        )
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"\nmemory, {shape} int16 CT volume, {dtype}, default chunking: peak RSS {m['peak_gib']:.2f} GiB "
              f"(RSS before the call {m['rss_before_gib']:.2f} GiB, output maps {m['output_gib']:.2f} GiB), "
              f"{m['seconds']:.1f} s = {np.prod(args.memory_shape) / m['seconds']:,.0f} voxels/s")


if __name__ == "__main__":
    main()
