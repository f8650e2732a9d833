"""Bone patches/s: ``ExtractBonePatches`` vs the per-bone ``scipy.ndimage.label`` + crop loop a user would write.

Phantom hand radiographs at the default cohort size (768 rows x 538 columns), 7 bones each. The peer labels
the whole image once per bone; the transform finds every bone's box in one ``find_objects`` pass and labels
components inside those boxes only. Both give identical patches (checked before timing). Rows:
full-resolution label map (NumPy in/out, then MetaTensor with metadata, then the dictionary transform) and a
1/4-resolution label map (both sides upsample it with the same torch ``nearest-exact`` call). Single thread.

    PYTHONPATH=. python benchmarks/bench_bone.py [--images 6] [--repeats 5] [--height 768]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from monai.data import MetaTensor
from scipy import ndimage

from monai_osteo.data.phantoms import render_subject, sample_subject
from monai_osteo.transforms.bone import ExtractBonePatches, ExtractBonePatchesd


def peer(image: np.ndarray, labels: np.ndarray, margin: float = 0.05, min_area: float = 5e-4) -> list:
    """Straightforward loop: per bone, label the full image, keep the largest component, crop, pad square."""
    min_px = min_area * labels.size
    patches = []
    for v in range(1, 8):
        lab, n = ndimage.label(labels == v, structure=np.ones((3, 3), bool))
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        k = int(sizes.argmax())
        if sizes[k] < min_px:
            continue
        comp = lab == k
        rows, cols = np.flatnonzero(comp.any(1)), np.flatnonzero(comp.any(0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = image[r0:r1, c0:c1] * comp[r0:r1, c0:c1]
        h, w = crop.shape
        side = max(h, w) + 2 * int(round(margin * max(h, w)))
        top, left = (side - h) // 2, (side - w) // 2
        patch = np.zeros((1, side, side), image.dtype)
        patch[0, top:top + h, left:left + w] = crop
        patches.append(patch)
    return patches


def upsample(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(low)[None, None].float()
    return torch.nn.functional.interpolate(t, size=size, mode="nearest-exact")[0, 0].to(torch.uint8).numpy()


def rate(fn, cases, repeats: int) -> float:
    """Best-of-``repeats`` patches per second over all cases."""
    best, n = float("inf"), 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = sum(len(fn(*c)) for c in cases)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--height", type=int, default=768)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = []
    for i in range(args.images):
        r, _ = render_subject(sample_subject(np.random.default_rng(i)), seed=0, stream=5, index=i, height=args.height)
        cases.append((r.image, r.truth))
    size = cases[0][0].shape
    t, td = ExtractBonePatches(), ExtractBonePatchesd("image", "label")
    for image, truth in cases:  # identical output before timing
        ours, ref = t(image[None], truth[None]), peer(image, truth)
        if len(ours) != len(ref) or any(not np.array_equal(a, b) for a, b in zip(ours, ref)):
            raise RuntimeError("ExtractBonePatches and the peer loop disagree; fix before timing.")
    low = [(im, tr[2::4, 2::4]) for im, tr in cases]
    meta = [(MetaTensor(torch.from_numpy(im[None].astype(np.float32)), meta={"filename_or_obj": f"{i}.png"}),
             torch.from_numpy(tr[None])) for i, (im, tr) in enumerate(cases)]
    rows = [
        ("full-res labels, numpy", lambda im, tr: t(im[None], tr[None]), lambda im, tr: peer(im, tr), cases),
        ("full-res labels, MetaTensor+meta", lambda im, tr: t(im, tr),
         lambda im, tr: peer(im[0].numpy(), tr[0].numpy()), meta),
        ("full-res labels, dict transform", lambda im, tr: td({"image": im, "label": tr}),
         lambda im, tr: peer(im[0].numpy(), tr[0].numpy()), meta),
        ("1/4-res labels, numpy", lambda im, lo: t(im[None], lo[None]),
         lambda im, lo: peer(im, upsample(lo, im.shape)), low),
    ]
    print(f"{args.images} phantom radiographs {size[0]}x{size[1]}, 7 bones each, best of {args.repeats}, 1 thread")
    print(f"{'case':36s} {'ours patches/s':>15s} {'peer patches/s':>15s} {'ratio':>7s}")
    for name, ours_fn, peer_fn, data in rows:
        a, b = rate(ours_fn, data, args.repeats), rate(peer_fn, data, args.repeats)
        print(f"{name:36s} {a:15.0f} {b:15.0f} {a / b:6.1f}x")
    if torch.cuda.is_available():
        gpu = [(im.cuda(), tr.cuda()) for im, tr in meta]
        torch.cuda.synchronize()
        a = rate(lambda im, tr: (t(im, tr), torch.cuda.synchronize())[0], gpu, args.repeats)
        print(f"{'full-res labels, MetaTensor, CUDA':36s} {a:15.0f}")


if __name__ == "__main__":
    main()
