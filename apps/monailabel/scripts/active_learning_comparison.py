"""Simulated active learning on the phantom: bone-uncertainty ranking vs random, labels from the ground truth.

Each strategy starts from the same random labelled images and model, then for ``--rounds`` rounds picks ``--batch``
images from the unlabelled pool (highest :func:`monai_osteo.bundle.label_app.bone_uncertainty`, or random),
"labels" them with the phantom's first annotator map, fine-tunes the segmentation bundle's ``train.json`` on all
labelled images (as ``/train/hand_bones`` does) and measures the consensus Dice on held-out radiographs. Prints a
table (Dice per round, Dice gained per labelled image) and writes ``active_learning.json``. Runs in the main
environment (no MONAI Label needed)::

    python apps/monailabel/scripts/active_learning_comparison.py --seeds 0 1 --out runs/active_learning
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

import numpy as np
import torch

from monai_osteo.bundle import find_bundle_root, resolve_datalist
from monai_osteo.bundle.label_app import bone_uncertainty
from monai_osteo.data import LoadRadiograph
from monai_osteo.io import atomic_write_json

SMALL = {"spatial_size": [128, 88], "channels": [8, 16, 32, 64], "head_channels": 8, "num_decoders": 2,
         "num_samples": 2, "latent_dim": 2}


def train(records, val, out: Path, epochs: int, init: dict | None, seed: int):
    from monai.bundle import ConfigWorkflow

    cfg = Path(find_bundle_root("hand_bone_segmentation")) / "configs"
    wf = ConfigWorkflow(config_file=str(cfg / "train.json"), meta_file=str(cfg / "metadata.json"),
                        workflow_type="train", logging_file=False, output_dir=str(out), resume=False,
                        max_epochs=epochs, seed=seed, anneal_epochs=max(epochs // 2, 1), **SMALL,
                        **{"train#dataset#data": records, "validate#dataset#data": val})
    wf.initialize()
    net = wf.parser.get_parsed_content("network")
    if init is not None:
        net.load_state_dict(init)
    wf.run()
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    evaluator.run()
    dice = float(evaluator.state.metrics["val_dice"])
    return {k: v.detach().clone() for k, v in net.state_dict().items()}, net, dice


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--pool", type=int, default=40)
    p.add_argument("--test", type=int, default=12)
    p.add_argument("--start", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", default="runs/active_learning")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    out = Path(a.out)
    results = {}
    for seed in a.seeds:
        dl = resolve_datalist(None, None, str(out / f"data_seed{seed}"), "quick", seed,
                              {"subjects": 0, "unlabeled": a.pool + a.test, "height": 192})
        recs = json.loads(Path(dl).read_text())["unlabeled"]
        root = Path(dl).parent
        recs = [{"image": str(root / r["image"]), "label": str(root / r["masks"][0])} for r in recs]
        rng = random.Random(seed)
        rng.shuffle(recs)
        test, pool = recs[: a.test], recs[a.test:]
        start = pool[: a.start]
        init, net, dice0 = train(start, test, out / f"s{seed}_start", a.epochs, None, seed)
        for strategy in ("bone_uncertainty", "random"):
            labelled, rest, state, curve = list(start), list(pool[a.start:]), init, [dice0]
            srng = random.Random(1000 + seed)
            net.load_state_dict(init)
            for r in range(a.rounds):
                if strategy == "random":
                    pick = srng.sample(range(len(rest)), a.batch)
                else:
                    load = LoadRadiograph()
                    scores = [bone_uncertainty(net, load(x["image"]), SMALL["spatial_size"]) for x in rest]
                    pick = list(np.argsort(scores)[::-1][: a.batch])
                labelled += [rest[i] for i in pick]
                rest = [x for i, x in enumerate(rest) if i not in set(pick)]
                state, net, dice = train(labelled, test, out / f"s{seed}_{strategy}_r{r}", a.epochs, state, seed)
                curve.append(dice)
                print(f"seed {seed} {strategy} round {r + 1}: {len(labelled)} labelled, test Dice {dice:.4f}",
                      flush=True)
            results.setdefault(strategy, {})[str(seed)] = curve
    n = [a.start + a.batch * r for r in range(a.rounds + 1)]
    print("\n| strategy | " + " | ".join(f"{k} labelled" for k in n) + " | Dice gained per labelled image |")
    print("|---|" + "---|" * (len(n) + 1))
    for strategy, per_seed in results.items():
        c = np.array(list(per_seed.values()))
        gain = (c[:, -1] - c[:, 0]) / (n[-1] - n[0])
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(c.mean(0), c.std(0))]
        print(f"| {strategy} | " + " | ".join(cells) + f" | {gain.mean():.4f} ± {gain.std():.4f} |")
    atomic_write_json(out / "active_learning.json", {"labelled": n, "dice": results, "settings": vars(a)})


if __name__ == "__main__":
    main()
