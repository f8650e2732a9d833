"""vertebra_osteo inference of one 512 × 512 × 300 CT end to end on CPU, against the 10 s per CT target.

End to end = ``inference.json`` run by MONAI's ``ConfigWorkflow`` on one case given by ``ct_file``/``label_file``:
read the CT and its label map from NIfTI (``LoadCTd``, int16/uint8 ``.nii.gz``), the spine views of the report,
the vertebra-aligned ROIs (``ExtractVertebraROId``), the fixed CT window, ``VertebraNet`` on all vertebrae of the
CT in one batch (device-conditioned MoE head), the JSON + PNG report (``VertebraReportWriter``); building the
network and loading its weights are included. Random weights (the time does not depend on them). Two presets:
``paper`` (64³ ROIs @ 0.75 mm, ResNet-34 at full width) and ``quick`` (32³ @ 1.5 mm, widen 0.25).

The CT is a phantom patient (chest + abdomen protocol: T1-L5, 17 vertebrae, 0.7 mm pixels) in a 512 × 512 × 300
volume whose field of view around the spine is a noisy soft-tissue body in air (so that the file compresses like
a real CT, not like a constant pad). Its slices are 1.5 mm: T1-L5 spans ~450 mm, so 300 slices of 1 mm would hold
only ~11 vertebrae; the voxel count and the vertebra count, which set the cost, are those asked for.

Each preset runs in its own process: the first run is cold (lazy imports, network built, weights loaded), the
second warm; peak memory = high-water RSS of the first run above the RSS before it. The split (reading / views /
ROI extraction / network / report) times the workflow's own transform, network and writer objects on the warm
process, one call each after the runs.

Run (state the thread count)::

    OMP_NUM_THREADS=2 bash scripts/run.sh python benchmarks/bench_vertebra_inference.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHAPE = (512, 512, 300)
TARGET_S = 10.0
PRESETS = {"paper": {"roi_size": [64, 64, 64], "roi_spacing": 0.75, "widen_factor": 1.0},
           "quick": {"roi_size": [32, 32, 32], "roi_spacing": 1.5, "widen_factor": 0.25}}


def make_ct(folder: str, inplane_mm: float = 0.7, slice_mm: float = 1.5) -> tuple[str, str, int]:
    """Write ``ct.nii.gz`` (int16 HU) and ``vertebrae.nii.gz`` (uint8 VerSe) of SHAPE; return paths and the number
    of vertebrae."""
    import nibabel as nib

    from monai_osteo.data.phantoms.vertebra import render_patient, sample_patient

    rng = np.random.default_rng(7)
    p = sample_patient(rng, "P", "A", inplane_mm=(inplane_mm, inplane_mm), slices=(slice_mm,),
                       protocols={"chest_abdomen": 1.0})
    ct = render_patient(p, rng, fine_mm=0.7)
    n = ct.image.shape
    # body: a noisy soft-tissue ellipse (35 x 25 cm) in air (+y anterior), the spine block at its back
    x = (np.arange(SHAPE[0]) - SHAPE[0] / 2) * inplane_mm
    y = (np.arange(SHAPE[1]) - SHAPE[1] / 2) * inplane_mm
    body = np.where((x[:, None] / 175.0) ** 2 + (y[None, :] / 125.0) ** 2 < 1.0, 30.0, -1000.0).astype(np.float32)
    vol = np.empty(SHAPE, dtype=np.int16)
    for z in range(0, SHAPE[2], 25):
        chunk = rng.standard_normal((*SHAPE[:2], min(25, SHAPE[2] - z)), dtype=np.float32) * 20.0
        vol[..., z:z + 25] = np.rint(body[..., None] + chunk).astype(np.int16)
    lab = np.zeros(SHAPE, dtype=np.uint8)
    crop = [min(a, s) for a, s in zip(n, SHAPE)]
    src = tuple(slice((a - c) // 2, (a - c) // 2 + c) for a, c in zip(n, crop))
    off = [(SHAPE[0] - crop[0]) // 2, int(SHAPE[1] / 2 - 125.0 / inplane_mm) + 10, (SHAPE[2] - crop[2]) // 2]
    dst = tuple(slice(o, o + c) for o, c in zip(off, crop))
    vol[dst], lab[dst] = ct.image[src], ct.labels[src]
    affine = ct.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ (np.array(off) - np.array([s.start for s in src]))
    paths = (os.path.join(folder, "ct.nii.gz"), os.path.join(folder, "vertebrae.nii.gz"))
    for path, arr in zip(paths, (vol, lab)):
        img = nib.Nifti1Image(arr, affine)
        img.header.set_xyzt_units("mm")
        nib.save(img, path)
    return paths[0], paths[1], len(np.unique(lab)) - 1


def _status(key: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))


def _child(preset: str, ct: str, labels: str, threads: int, folder: str, queue) -> None:
    torch.set_num_threads(threads)
    from monai.bundle import ConfigWorkflow

    root = Path(__file__).resolve().parents[1] / "bundles" / "vertebra_osteo"
    configs = [str(root / "configs" / c) for c in ("train.json", "inference.json")]
    model, out = os.path.join(folder, f"{preset}.pt"), os.path.join(folder, f"out_{preset}")
    wf = ConfigWorkflow(config_file=configs, meta_file=str(root / "configs" / "metadata.json"), workflow_type="infer",
                        bundle_root=str(root), output_dir=os.path.join(folder, "models"), device="$torch.device('cpu')",
                        num_workers=0, ct_file=ct, label_file=labels, model_file=model, predictions_dir=out,
                        **PRESETS[preset])
    wf.initialize()
    net = wf.parser.get_parsed_content("network_def")
    torch.save(net.state_dict(), model)
    n_params = sum(p.numel() for p in net.parameters())
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark (VmHWM) to the current RSS
        f.write("5")
    start = time.perf_counter()
    wf.run()
    cold = time.perf_counter() - start
    peak = _status("VmHWM") - before
    start = time.perf_counter()
    wf.run()
    warm = time.perf_counter() - start
    report = json.loads(next(Path(out).glob("r*.json")).read_text())
    split = _split(wf, ct, labels)
    queue.put({"cold": cold, "warm": warm, "peak": peak, "rss": before, "split": split, "params": n_params,
               "vertebrae": report["n_vertebrae"], "skipped": len(report["skipped_vertebrae"])})


def _split(wf, ct: str, labels: str) -> dict[str, float]:
    """Seconds of each step of the workflow's own objects on one case (warm process)."""
    from monai.data import list_data_collate
    from monai.transforms import Compose

    from monai_osteo.engines.vertebra_osteo import VertebraBatch

    p = wf.parser.get_parsed_content
    load, views, rois = p("case_transforms")
    per_vertebra, network, writer = Compose(p("vertebra_transforms")), p("network"), p("report_writer")
    item = p("inputs")["items"][0]
    times, t = {}, time.perf_counter()
    d = load(dict(item))
    times["reading"], t = time.perf_counter() - t, time.perf_counter()
    d = views(d)
    times["views"], t = time.perf_counter() - t, time.perf_counter()
    vertebrae = rois(d)
    del d
    for v in vertebrae:
        v["skipped"] = json.dumps(list(v["image"].meta.get("skipped", [])))
    batch = list_data_collate([per_vertebra(v) for v in vertebrae])
    times["roi_extraction"], t = time.perf_counter() - t, time.perf_counter()
    image, _, (device,), _ = VertebraBatch()(batch, torch.device("cpu"))
    with torch.no_grad():
        pred = network.eval()(image, device)
    times["network"], t = time.perf_counter() - t, time.perf_counter()
    writer.write(batch, pred)
    times["report"] = time.perf_counter() - t
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = ap.parse_args()
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print(f"torch {torch.__version__}, threads {args.threads} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), "
          f"CT {SHAPE}, cpu count {os.cpu_count()}")
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ct, labels, count = make_ct(tmp)
        print(f"CT written in {time.perf_counter() - t:.1f} s: {count} vertebrae in the label map, "
              f"{os.path.getsize(ct) / 2**20:.0f} MiB .nii.gz")
        for preset in args.presets:
            q = ctx.Queue()
            proc = ctx.Process(target=_child, args=(preset, ct, labels, args.threads, tmp, q))
            proc.start()
            r = q.get()
            proc.join()
            s = r["split"]
            verdict = "within" if r["cold"] <= TARGET_S else "over"
            print(f"{preset} ({PRESETS[preset]}, {r['params'] / 1e6:.1f} M parameters): {r['vertebrae']} vertebrae "
                  f"({r['skipped']} skipped by the ROI extraction)")
            print(f"  end to end: cold {r['cold']:.2f} s ({verdict} the {TARGET_S:.0f} s target, ratio "
                  f"{r['cold'] / TARGET_S:.2f}), warm {r['warm']:.2f} s; peak memory +{r['peak']:.0f} MiB over "
                  f"{r['rss']:.0f} MiB")
            print("  split (warm): " + ", ".join(f"{k} {v:.2f} s" for k, v in s.items())
                  + f" (sum {sum(s.values()):.2f} s)")


if __name__ == "__main__":
    main()
