"""Share of an OT U-Net training step spent in the cost matrix + exact coupling (issue target: <= 5%).

Setting of the issue: K=4 decoders, S=4 samples, M=4 annotators, 256x256 images, batch 8, C=8 classes, the default
channels (16, 32, 64, 128, 256), Adam, CPU. Peer: the rest of the same training step (network forward/backward and
optimizer), measured in the same run. The OT part is timed twice: as the loss's own forward + backward w.r.t. the
logits (cost matrix, coupling, KL), and the coupling alone (POT ``ot.emd`` with a slack column, per image).

Run::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 PYTHONPATH=. python benchmarks/bench_ot_step.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from monai_osteo.losses import OTSegmentationLoss
from monai_osteo.losses.functional.ot import batch_capacity_constrained_coupling
from monai_osteo.networks.nets import MultiDecoderOTUNet


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--decoders", type=int, default=4)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--annotators", type=int, default=4)
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    net = MultiDecoderOTUNet(2, 1, args.classes, num_decoders=args.decoders, num_samples=args.samples)
    loss_fn = OTSegmentationLoss(gamma=0.5)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.rand(args.batch, 1, args.size, args.size)
    masks = torch.randint(0, args.classes, (args.batch, args.annotators, args.size, args.size))
    weights = torch.full((args.batch, args.annotators), 1.0 / args.annotators)

    def step() -> None:
        opt.zero_grad()
        out = net(x, with_uncertainty=False)
        loss_fn(out["logits"], out["alpha"], masks, weights).backward()
        opt.step()

    with torch.no_grad():
        ref = net(x, with_uncertainty=False)
    logits = ref["logits"].detach().requires_grad_(True)
    alpha = ref["alpha"].detach().requires_grad_(True)

    def ot_part() -> None:
        loss_fn(logits, alpha, masks, weights).backward()

    step()  # warm-up
    ot_part()
    cost = loss_fn.last["cost_matrix"]
    steps, ots, couplings = [], [], []
    for _ in range(args.repeats):  # interleaved
        steps += timed(step, 1)
        ots += timed(ot_part, 1)
        couplings += timed(lambda: batch_capacity_constrained_coupling(cost, weights, 0.5), 1)
    t_step, t_ot, t_cpl = (statistics.median(v) for v in (steps, ots, couplings))
    keys = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    env = " ".join(f"{k}={os.environ[k]}" for k in keys if k in os.environ)
    print(f"command: {env} python benchmarks/bench_ot_step.py (torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, K={args.decoders} S={args.samples} M={args.annotators} {args.size}^2 batch {args.batch})")
    print(f"  training step (forward + OT loss + backward + Adam)  {t_step * 1e3:9.1f} ms  (median of {args.repeats})")
    print(f"  OT loss forward + backward (cost matrix, coupling, KL) {t_ot * 1e3:7.1f} ms")
    print(f"  exact coupling alone (ot.emd with slack, {args.batch} images) {t_cpl * 1e3:7.2f} ms")
    print(f"  share of the step in cost + coupling: {t_ot / t_step:.1%}   (target <= 5%)")
    print(f"  share of the step in the coupling alone: {t_cpl / t_step:.2%}")


if __name__ == "__main__":
    main()
