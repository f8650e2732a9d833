"""Command line: ``python -m monai_osteo.data.phantoms {hand|skin|fluorescence|vertebra} --out DIR [--preset P]``."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from monai_osteo.data.phantoms.cohort import PRESETS, generate_hand_cohort
from monai_osteo.data.phantoms.fluorescence import FLUORESCENCE_PRESETS, generate_fluorescence_cohort
from monai_osteo.data.phantoms.skin import SKIN_PRESETS, generate_skin_cohort
from monai_osteo.data.phantoms.vertebra import VERTEBRA_PRESETS, generate_vertebra_cohort

#: the 2-D cohorts of the S4MI and MedSASS bundles: name -> (help, presets, generator)
OTHER_COHORTS = {
    "skin": ("dermoscopy-like RGB skin lesions with lesion masks, 3 classes (ISIC-2017 analogue)", SKIN_PRESETS,
             generate_skin_cohort),
    "fluorescence": ("fluorescence-microscopy tiles with nuclei/cell masks and multi-hot cell types "
                     "(Dermatomyositis / TissueNet analogue)", FLUORESCENCE_PRESETS, generate_fluorescence_cohort),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_osteo.data.phantoms",
                                     description="Generate a deterministic phantom cohort.")
    sub = parser.add_subparsers(dest="cohort", required=True)
    hand = sub.add_parser("hand", help="hand/wrist radiographs with annotator masks and DXA T-scores")
    hand.add_argument("--out", required=True, help="output folder")
    hand.add_argument("--preset", choices=sorted(PRESETS), default="default",
                      help="sizes to start from: " + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    hand.add_argument("--subjects", type=int, help="labelled subjects (paper: 192)")
    hand.add_argument("--unlabeled", type=int, help="unlabelled radiographs (paper: 1154)")
    hand.add_argument("--height", type=int, help="image height in pixels (paper: 3588)")
    hand.add_argument("--annotators", type=int, default=3, help="annotator masks per image (default 3)")
    hand.add_argument("--prevalence", type=float, default=0.28, help="share of osteoporotic subjects")
    hand.add_argument("--seed", type=int, default=0)
    hand.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    hand.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, (text, presets, _) in OTHER_COHORTS.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--preset", choices=sorted(presets), default="quick",
                       help="; ".join(f"{k}: {v}" for k, v in presets.items()))
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    vert = sub.add_parser("vertebra", help="thoraco-lumbar CT (HU) with VerSe vertebra label maps and DXA of L1-L4 "
                                           "on three devices, sites A-D (vertebral-CT paper's Table 1)")
    vert.add_argument("--out", required=True, help="output folder")
    vert.add_argument("--preset", choices=sorted(VERTEBRA_PRESETS), default="quick",
                      help="tiny: CI (34 patients); quick: CPU pipeline (226 patients); paper: Table 1 (3,897)")
    vert.add_argument("--seed", type=int, default=0)
    for name, text in (("device_bias_scale", "1: devices as their vendors; 0: every device is Hologic (control)"),
                       ("texture_signal", "1: BMD acts through microarchitecture; 0: only the mean density (control)"),
                       ("marrow_fat_confound", "1: marrow fat varies with age/BMD; 0: constant (control)")):
        vert.add_argument("--" + name, type=float, default=1.0, help=text)
    vert.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    vert.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.cohort in OTHER_COHORTS:
        start = time.perf_counter()
        try:
            path = OTHER_COHORTS[args.cohort][2](args.out, preset=args.preset, seed=args.seed, workers=args.workers,
                                                 progress=not args.quiet)
        except (ValueError, RuntimeError) as e:
            logging.getLogger("monai_osteo").error("%s", e)
            return 1
        logging.getLogger("monai_osteo").info("datalist: %s (%.1f s)", path, time.perf_counter() - start)
        return 0
    if args.cohort == "vertebra":
        start = time.perf_counter()
        try:
            path = generate_vertebra_cohort(args.out, preset=args.preset, seed=args.seed,
                                            device_bias_scale=args.device_bias_scale,
                                            texture_signal=args.texture_signal,
                                            marrow_fat_confound=args.marrow_fat_confound, workers=args.workers,
                                            progress=not args.quiet)
        except (ValueError, RuntimeError) as e:
            logging.getLogger("monai_osteo").error("%s", e)
            return 1
        logging.getLogger("monai_osteo").info("datalist: %s (%.1f s)", path, time.perf_counter() - start)
        return 0
    kwargs = dict(PRESETS[args.preset])
    for key in ("subjects", "unlabeled", "height"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    start = time.perf_counter()
    try:
        path = generate_hand_cohort(args.out, seed=args.seed, annotators=args.annotators, prevalence=args.prevalence,
                                    workers=args.workers, progress=not args.quiet, **kwargs)
    except (ValueError, RuntimeError) as e:
        logging.getLogger("monai_osteo").error("%s", e)
        return 1
    logging.getLogger("monai_osteo").info("datalist: %s (%.1f s)", path, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
