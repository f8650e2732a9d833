"""Screen one paper-size hand radiograph (3588 x 2515) end to end on CPU: seconds and radiographs/hour.

End to end = read the 16-bit PNG from disk (``LoadRadiograph``), segment at 256 x 176 with the OT multi-decoder
U-Net (K=4, S=2, channels 16-256) including its uncertainty maps, upsample to full resolution, cut the 7 bone
patches, resize them to 224 x 224, classify them with the ResNet-50 bone classifier, average (Eq. 10) and
compute the QC flags: inference.json's ``HandScreeningInferer`` + post-processing (the JSON/PNG report is not
included; ``--report`` adds it). ``ours + gates`` adds the three screening gates of inference.json (input
plausibility, hand layout, bone-feature Mahalanobis; fitted here on a few phantom masks and random 2048-d
features, as the time does not depend on the fitted values) and prints their cost per radiograph.
The bundle's default (paper) architecture, random weights: the time does not depend on the weights,
but an untrained segmentation finds no real bones, so the network's output is replaced by the phantom's
ground-truth masks *after* the network has run (the full network cost is paid), which gives the 7 real bone
patches downstream.

Peer, measured in the same run: the same screening with MONAI's default ResNet-50 stem (``conv1_t_stride=1``,
4x the classifier FLOPs), which is what ``monai.networks.nets.resnet50`` gives without the stride argument.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \
        bash scripts/run.sh python benchmarks/bench_screening.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import median_round_times  # noqa: E402

from monai_osteo.data import LoadRadiograph  # noqa: E402
from monai_osteo.data.phantoms import render_subject, sample_subject  # noqa: E402
from monai_osteo.inferers import HandScreeningInferer  # noqa: E402
from monai_osteo.metrics.anatomy import HandLayoutModel, measure_bone_layout  # noqa: E402
from monai_osteo.metrics.ood import BoneFeatureOOD  # noqa: E402
from monai_osteo.networks.nets import BoneClassifier, MultiDecoderOTUNet  # noqa: E402
from monai_osteo.transforms.screening import ScreeningDecisiond, ScreeningQCd  # noqa: E402
from monai_osteo.transforms.screening_gates import (  # noqa: E402
    AnatomyGated,
    FeatureOODGated,
    InputPlausibilityGated,
    ScreeningGates,
)


class OracleOutputUNet(MultiDecoderOTUNet):
    """Runs the real network, then returns ground-truth one-hot probabilities as its mixture mean (timing only)."""

    oracle: torch.Tensor | None = None

    def forward(self, x, num_samples=None, with_uncertainty=True):
        out = super().forward(x, num_samples=num_samples, with_uncertainty=with_uncertainty)
        lab = F.interpolate(self.oracle[None, None].float(), size=x.shape[2:], mode="nearest-exact")[0, 0].long()
        out["mean_prob"] = F.one_hot(lab, 8).permute(2, 0, 1)[None].float()
        return out


def fitted_gates(path: Path, rng: np.random.Generator) -> Path:
    """A gates.pt with the layout model fitted on 12 small phantoms' masks and the feature model on random features."""
    layouts = [measure_bone_layout(render_subject(sample_subject(rng), seed=0, stream=9, index=i, height=256)[0].truth)
               for i in range(1, 13)]
    layout = HandLayoutModel().fit(layouts)
    names = ["ulna", "radius", "M1", "M2", "M3", "M4", "M5"]
    feats = BoneFeatureOOD().fit(rng.normal(size=(7 * 40, 2048)), names * 40)
    ScreeningGates(layout, feats, {"layout": 10.0, "fragmentation": 0.2, "features": 1.0}).save(path)
    return path


def build(stride: int, truth: np.ndarray, gates: Path | None = None):
    """inference.json's inferer and post-processing with the paper's networks (random weights, oracle masks)."""
    seg = OracleOutputUNet(spatial_dims=2, in_channels=1, out_channels=8, channels=(16, 32, 64, 128, 256),
                           num_decoders=4, num_samples=2, latent_dim=6, head_channels=16)
    seg.oracle = torch.from_numpy(truth)
    clf = BoneClassifier(spatial_dims=2, in_channels=1, out_channels=2, backbone="resnet50", conv1_t_stride=stride)
    inferer = HandScreeningInferer(seg, segmentation_size=(256, 176), patch_size=224)
    post = [ScreeningDecisiond("pred"), ScreeningQCd("pred")]
    if gates is not None:
        post = [InputPlausibilityGated("pred"), AnatomyGated("pred", gates_file=gates),
                FeatureOODGated("pred", gates_file=gates), *post]

    def screener(image):
        d = {"pred": inferer(image[None], clf), "image": image[None]}
        for t in post:
            d = t(d)
        return d["pred"][0]

    return screener


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--report", action="store_true", help="also write the PNG report (as inference.json does)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    hand, _ = render_subject(sample_subject(rng), seed=0, stream=9, index=0, height=3588)
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "radiograph.png"
    Image.fromarray(hand.image).save(path)
    loader = LoadRadiograph()
    ours, peer = build(2, hand.truth), build(1, hand.truth)
    gated = build(2, hand.truth, fitted_gates(tmp / "gates.pt", rng))
    res = ours(loader(str(path)))
    print(f"image {hand.image.shape[0]} x {hand.image.shape[1]}, bones found {len(res['bones_found'])}, "
          f"threads {args.threads}")

    def screen(screener):
        def fn():
            r = screener(loader(str(path)))
            if args.report:
                from monai_osteo.report import save_screening_report_png

                save_screening_report_png(tmp / "report.png", np.asarray(loader(str(path)))[0], r["labels"],
                                          r["bone_probabilities"], r["decision_name"], r["probability"],
                                          uncertainty=r["uncertainty"], qc_flags=r["qc_messages"])
        return fn

    with torch.inference_mode():
        t = median_round_times({"ours (ResNet-50, stride-2 stem)": screen(ours),
                                "peer (MONAI default stride-1 stem)": screen(peer),
                                "ours + gates": screen(gated)}, args.rounds, args.warmup)
    a, b, g = t["ours (ResNet-50, stride-2 stem)"], t["peer (MONAI default stride-1 stem)"], t["ours + gates"]
    # stage split of ours (one extra call, informational)
    start = time.perf_counter()
    img = loader(str(path))
    t_read = time.perf_counter() - start
    print(f"ours: {a:.3f} s/radiograph = {3600 / a:,.0f} radiographs/hour (read {t_read:.3f} s)")
    print(f"peer: {b:.3f} s/radiograph = {3600 / b:,.0f} radiographs/hour")
    print(f"speed-up vs peer: {b / a:.2f}x  (target: <= 2 s and >= 2000/h on 2 cores)")
    print(f"ours + gates: {g:.3f} s/radiograph = {3600 / g:,.0f} radiographs/hour; the gates add {g - a:+.3f} s "
          f"({100 * (g - a) / a:+.1f} %)")
    del img
    return 0


if __name__ == "__main__":
    sys.exit(main())
