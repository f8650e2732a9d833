"""Share of the MedSASS training step spent making the Otsu pseudo-masks (target: <= 5% of the step).

One MedSASS step (Algorithm 1) = ``OtsuPseudoLabelBatch`` (batch to the device + per-image Otsu masks of the
augmented batch, on that device) + U-Net forward + focal-Tversky + backward + Adam step. The peer measured in the
same run is the same step with a precomputed label (``prepare_batch`` that only moves the batch), so the ratio
(step with pseudo-labels) / (step without) - 1 is the pseudo-label overhead; the pseudo-mask call alone is timed
too. Contenders run interleaved, median of the rounds.

Run (glibc settings keep allocation timings stable; state the thread count)::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 PYTHONPATH=. \\
        python benchmarks/bench_medsass_step.py --threads 2                    # paper: ResNet-50 U-Net, 16 x 224²
    ... python benchmarks/bench_medsass_step.py --threads 2 --quick            # quick preset: ResNet-18, 16 x 96²
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from _timing import median_round_times  # noqa: E402  (benchmarks/ is on sys.path)

from monai_osteo.engines.medsass import OtsuPseudoLabelBatch
from monai_osteo.losses import FocalTverskyLoss
from monai_osteo.networks.nets import ResNetUNet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the quick preset's network and image size")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    if args.quick:
        net, size = ResNetUNet(2, 3, 1, backbone="resnet18", decoder_channels=(64, 32, 16)), 96
    else:
        net, size = ResNetUNet(2, 3, 1, backbone="resnet50"), 224
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), 3.6e-4)
    loss_fn = FocalTverskyLoss(sigmoid=True)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(args.batch, 3, size, size, generator=g)}
    pseudo = OtsuPseudoLabelBatch(foreground="dark")
    fixed_label = pseudo(batch, device)[1].clone()

    def step(prepare) -> None:
        x, y = prepare()
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def masks_only() -> None:
        pseudo(batch, device)
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = median_round_times({
        "step with Otsu pseudo-labels": lambda: step(lambda: pseudo(batch, device)),
        "step with a precomputed label": lambda: step(lambda: (batch["image"].to(device), fixed_label)),
        "pseudo-masks alone": masks_only,
    }, args.rounds, args.warmup)
    for k, v in times.items():
        print(f"{k:32s} {v * 1000:9.1f} ms")
    with_pl, without = times["step with Otsu pseudo-labels"], times["step with a precomputed label"]
    print(f"pseudo-masks / step: {times['pseudo-masks alone'] / with_pl:.2%} "
          f"(step overhead vs precomputed label: {with_pl / without - 1:+.2%}; target <= 5%)")


if __name__ == "__main__":
    main()
