"""Overhead of the S4MI methods themselves: one CASS step and one cross-teaching step vs the sum of their two
networks' supervised steps.

- CASS: ``CASSTrainer._iteration`` (the CNN and the ViT on one augmented batch, ``2 - 2 cos`` loss, one backward,
  one Adam step over both) vs a supervised step of the CNN + a supervised step of the ViT (sigmoid focal loss on
  labels, each its own Adam), same batch.
- Cross-teaching: ``CrossTeachingTrainer._iteration`` (U-Net and Swin U-Net on 8 labelled + 8 unlabelled images:
  0.5 (CE + Dice) on the labelled half, Dice against the other network's argmax on the unlabelled half, one backward,
  one Adam step) vs a supervised step of the U-Net + one of the Swin U-Net on the 16 images (0.5 (CE + Dice)).

Ratio = method step / (sum of the two supervised steps); 1.0 means the method costs nothing beyond training its two
networks. Contenders run interleaved, median of the rounds.

Run (glibc settings keep allocation timings stable; state the thread count)::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 PYTHONPATH=. \\
        python benchmarks/bench_s4mi_step.py --threads 2 --quick   # quick preset: ResNet-18 + ViT-tiny 64², 64² seg
    ... python benchmarks/bench_s4mi_step.py --threads 2          # paper: ResNet-50 + ViT-B/16 224², 224² seg
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from _timing import median_round_times  # noqa: E402  (benchmarks/ is on sys.path)
from monai.losses import DiceLoss, FocalLoss

from monai_osteo.bundle.s4mi import segmentation_network
from monai_osteo.engines.s4mi import CASSTrainer, CrossTeachingTrainer
from monai_osteo.losses import CASSLoss, WeightedCEDiceLoss
from monai_osteo.networks.nets import CASSNetwork, s4mi_classifier


def _iterate(trainer, batch) -> None:
    trainer.state.iteration += 1
    trainer._iteration(trainer, batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the quick preset's networks and sizes")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    size, seg_size = ((64, 64), (64, 64)) if args.quick else ((224, 224), (224, 224))
    cnn_arch, vit_arch, patch = ("resnet18", "vit_tiny", 16) if args.quick else ("resnet50", "vit_b16", 16)
    swin_features = 12 if args.quick else 48
    g = torch.Generator().manual_seed(0)
    image = torch.rand(args.batch, 3, *size, generator=g)
    labels = (torch.rand(args.batch, 3, generator=g) > 0.5).float()
    seg_image = torch.rand(args.batch, 3, *seg_size, generator=g)
    seg_label = (torch.rand(args.batch, 1, *seg_size, generator=g) > 0.7).float()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # --- CASS
    cass_net = CASSNetwork(s4mi_classifier(cnn_arch, 3, 1000, size[0]),
                           s4mi_classifier(vit_arch, 3, 1000, size[0], patch)).to(device)
    cass = CASSTrainer(device=device, max_epochs=1, train_data_loader=[{"image": image}], network=cass_net,
                       optimizer=torch.optim.Adam(cass_net.parameters(), 1e-3), loss_function=CASSLoss())
    sup_cls = []
    for arch, p in ((cnn_arch, None), (vit_arch, patch)):
        net = s4mi_classifier(arch, 3, 3, size[0], p).to(device)
        sup_cls.append((net, torch.optim.Adam(net.parameters(), 3e-4)))
    focal = FocalLoss(use_softmax=False, gamma=2.0)

    def supervised_cls() -> None:
        for net, opt in sup_cls:
            opt.zero_grad(set_to_none=True)
            focal(net(image.to(device)), labels.to(device)).backward()
            opt.step()
        sync()

    # --- cross-teaching
    pair = segmentation_network("pair", 3, 2, seg_size, swin_feature_size=swin_features).to(device)
    ct = CrossTeachingTrainer(device=device, max_epochs=1, train_data_loader=[{}], network=pair,
                              optimizer=torch.optim.Adam(pair.parameters(), 3.6e-4, weight_decay=1e-5),
                              loss_function=WeightedCEDiceLoss(), labeled_batch_size=args.batch // 2,
                              pseudo_loss_function=DiceLoss(to_onehot_y=True, softmax=True, squared_pred=True,
                                                            batch=True))
    ct.state.consistency_weight = 0.1
    sup_seg = []
    for arch in ("unet", "swin"):
        net = segmentation_network(arch, 3, 2, seg_size, swin_feature_size=swin_features).to(device)
        sup_seg.append((net, torch.optim.Adam(net.parameters(), 3.6e-4, weight_decay=1e-5)))
    sup_loss = WeightedCEDiceLoss()

    def supervised_seg() -> None:
        for net, opt in sup_seg:
            opt.zero_grad(set_to_none=True)
            sup_loss(net(seg_image.to(device)), seg_label.to(device)).backward()
            opt.step()
        sync()

    cass.state.iteration = ct.state.iteration = 0
    times = median_round_times({
        "CASS step": lambda: (_iterate(cass, {"image": image}), sync()),
        "CNN + ViT supervised steps": supervised_cls,
        "cross-teaching step": lambda: (_iterate(ct, {"image": seg_image, "label": seg_label}), sync()),
        "U-Net + Swin supervised steps": supervised_seg,
    }, args.rounds, args.warmup)
    for k, v in times.items():
        print(f"{k:32s} {v * 1000:9.1f} ms")
    print(f"CASS / (CNN + ViT supervised): {times['CASS step'] / times['CNN + ViT supervised steps']:.2f}")
    print(f"cross-teaching / (U-Net + Swin supervised): "
          f"{times['cross-teaching step'] / times['U-Net + Swin supervised steps']:.2f}")


if __name__ == "__main__":
    main()
