"""The hand_osteo bundle, reduced: every config through MONAI's ConfigWorkflow, artefacts, exports, bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow, ckpt_export, verify_net_in_out

from tests.bundles.hand_osteo_tiny import ARCH, CONFIGS, tiny_train
from tests.utils import assert_allclose

ABLATIONS = sorted(p.stem for p in (CONFIGS / "ablations").glob("*.json"))


def _workflow(config, workflow_type: str, **override) -> ConfigWorkflow:
    files = [str(CONFIGS / c) for c in ([config] if isinstance(config, str) else config)]
    wf = ConfigWorkflow(config_file=files, meta_file=str(CONFIGS / "metadata.json"),
                        logging_file=str(CONFIGS / "logging.conf"), workflow_type=workflow_type, **override)
    wf.initialize()
    return wf


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hand_osteo")
    wf = _workflow("train.json", "train", **tiny_train(root))
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    return root


def test_train_writes_models_metrics_and_figures(trained):
    run = trained / "run"
    for name in ("model.pt", "segmentation.pt", "run.json", "segmentation/metrics.json",
                 "segmentation/val_examples.png", "patches/index.json", "ssl/model.pt", "ssl/metrics.json",
                 "probe/model.pt", "probe/predictions.json", "eval/metrics.json", "eval/metrics.md", "eval/roc.png",
                 "eval/bone_contributions.png"):
        assert (run / name).is_file(), name
    index = json.loads((run / "patches/index.json").read_text())
    bones = {r["bone"] for r in index["patches"]}
    assert bones <= {"ulna", "radius", "M1", "M2", "M3", "M4", "M5"} and bones
    # test subjects are never used for pretraining
    assert all(r["split"] == "training" for r in index["patches"] if "ssl" in r["role"])
    metrics = json.loads((run / "eval/metrics.json").read_text())
    summary = metrics["summary"]
    assert set(summary) == {"precision", "recall", "f1", "auc", "accuracy"}
    assert 0.0 <= summary["accuracy"]["mean"] <= 1.0
    # subject decision = argmax of the mean bone probability (Eq. 10)
    preds = json.loads((run / "probe/predictions.json").read_text())
    for s in preds["subjects"]["test"]:
        p = np.mean(list(s["bone_probabilities"].values()))
        assert abs(p - s["probability"]) < 1e-6 and s["decision"] == int(p >= 0.5)
    # a second run with resume reuses every stage (nothing retrained)
    stamp = (run / "ssl/model.pt").stat().st_mtime_ns
    wf = _workflow("train.json", "train", **tiny_train(trained))
    wf.run()
    assert (run / "ssl/model.pt").stat().st_mtime_ns == stamp


def test_evaluate_over_runs(trained, tmp_path):
    run = trained / "run"
    wf = _workflow("evaluate.json", "infer" if False else None, bundle_root=str(CONFIGS.parent),
                   run_dirs=[str(run), str(run)], output_dir=str(tmp_path / "eval"), backbone=ARCH["backbone"])
    wf.run()
    result = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert len(result["runs"]) == 1 or result["summary"]["auc"]["n"] >= 1
    for name in ("metrics.md", "roc.png", "bone_contributions.png"):
        assert (tmp_path / "eval" / name).is_file()
    table = (tmp_path / "eval/metrics.md").read_text()
    assert "mean ± std" in table


def _inputs(trained: Path, folder: Path) -> list[Path]:
    import pydicom.data

    folder.mkdir()
    images = sorted((trained / "data" / "images").glob("*.png"))[:2]
    for p in images:
        shutil.copy(p, folder / f"Doe_John_{p.name}")
    for name in ("RG1_UNCR.dcm", "RG3_UNCR.dcm"):
        shutil.copy(pydicom.data.get_testdata_file(name), folder / name)
    (folder / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    (folder / "truncated.png").write_bytes(images[0].read_bytes()[:200])
    return sorted(folder.iterdir())


def test_inference_reports_and_bad_files(trained, tmp_path):
    files = _inputs(trained, tmp_path / "in")
    out = tmp_path / "out"
    wf = _workflow("inference.json", "infer", bundle_root=str(CONFIGS.parent), dataset_dir=str(tmp_path / "in"),
                   models_dir=str(trained / "run"), output_dir=str(out), **ARCH)
    assert wf.check_properties() == []
    wf.run()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 4 and summary["failed"] == 2
    assert {Path(f["source"]).name for f in summary["failures"]} == {"corrupt.dcm", "truncated.png"}
    names = [p.name for p in out.iterdir()]
    assert not any("Doe" in n or "RG1" in n or n.startswith(".") for n in names), names
    reports = sorted(out.glob("r*.json"))
    assert len(reports) == 4 and len(list(out.glob("r*.png"))) == 4
    for path in reports:
        r = json.loads(path.read_text())
        assert set(r["bone_probabilities"]) == {"ulna", "radius", "M1", "M2", "M3", "M4", "M5"}
        assert set(r["bones_found"]) | set(r["bones_missing"]) == set(r["bone_probabilities"])
        assert set(r["qc_flags"]) <= {"missing_bones", "low_segmentation_confidence", "not_a_hand_radiograph"}
        assert "source" not in r
    assert len(files) == 6


def test_exports_match_eager(trained, tmp_path):
    run = trained / "run"
    over = {"bundle_root": str(CONFIGS.parent), "models_dir": str(run), **ARCH}
    args = {"meta_file": str(CONFIGS / "metadata.json"), "config_file": str(CONFIGS / "inference.json"),
            "args_file": None}
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(run / "model.pt"),
                **args, **{k: v for k, v in over.items()})
    ckpt_export(net_id="segmentation_mean_def", filepath=str(tmp_path / "segmentation.ts"),
                ckpt_file=str(run / "segmentation.pt"), **args, **{k: v for k, v in over.items()})
    wf = _workflow("inference.json", "infer", **over)
    clf = wf.parser.get_parsed_content("network_def")
    clf.load_state_dict(torch.load(run / "model.pt", map_location="cpu"))
    seg = wf.parser.get_parsed_content("segmentation_mean_def")
    seg.load_state_dict(torch.load(run / "segmentation.pt", map_location="cpu"))
    x = torch.rand(3, 1, ARCH["global_size"], ARCH["global_size"])
    ts = torch.jit.load(str(tmp_path / "model.ts"))
    assert_allclose(ts(x), clf.eval()(x), atol=1e-5, rtol=1e-4)
    y = torch.rand(2, 1, *ARCH["seg_spatial_size"])
    ts_seg = torch.jit.load(str(tmp_path / "segmentation.ts"))
    assert_allclose(ts_seg(y), seg.eval()(y), atol=1e-5, rtol=1e-4)


def test_verify_net_in_out():
    verify_net_in_out(net_id="network_def", meta_file=str(CONFIGS / "metadata.json"),
                      config_file=str(CONFIGS / "inference.json"), device="cpu", bundle_root=str(CONFIGS.parent))


@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_overrides_run(trained, tmp_path, name):
    """Each ablation override runs reduced; segmentation and patches are reused from the trained run when equal."""
    over = tiny_train(trained, output_dir=str(tmp_path / name),
                      segmentation_dir=str(trained / "run" / "segmentation"))
    wf = _workflow(["train.json", f"ablations/{name}.json"], "train", **over)
    assert wf.check_properties() == []
    wf.run()
    metrics = json.loads((tmp_path / name / "eval" / "metrics.json").read_text())
    assert "auc" in metrics["summary"]
    manifest = json.loads((tmp_path / name / "run.json").read_text())
    if name == "no_segmentation":
        assert manifest["patch_mode"] == "random"
    if name == "supervised_only":
        assert manifest["ssl"] is None


def test_multi_gpu_config_runs_distributed_on_cpu(tmp_path):
    """multi_gpu_train.json with 2 processes (gloo, CPU, plain DDP instead of NCCL + SyncBatchNorm)."""
    import subprocess
    import sys

    cpu = {"device": "$torch.device('cpu')",
           "network": "$torch.nn.parallel.DistributedDataParallel(@network_def)",
           "initialize": ["$dist.is_initialized() or dist.init_process_group(backend='gloo')",
                          "$@datalist if dist.get_rank() == 0 else None", "$dist.barrier()",
                          "$monai.utils.set_determinism(seed=@seed)"]}
    tiny = tiny_train(tmp_path, ssl_batch_size=4)
    files = []
    for name, content in (("cpu.json", cpu), ("tiny.json", tiny)):
        (tmp_path / name).write_text(json.dumps(content))
        files.append(str(tmp_path / name))
    config = [str(CONFIGS / "train.json"), str(CONFIGS / "multi_gpu_train.json"), *files]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m",
           "monai.bundle", "run", "--config_file", json.dumps(config).replace('"', "'"),
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf")]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = tmp_path / "run"
    ssl = json.loads((run / "ssl" / "metrics.json").read_text())
    n_patches = len([r for r in json.loads((run / "patches/index.json").read_text())["patches"] if "ssl" in r["role"]])
    # each rank trains on its shard: iterations per epoch = floor(ceil(n / 2) / batch)
    assert ssl["iterations"] == (n_patches + 1) // 2 // 4
    assert (run / "eval" / "metrics.json").is_file() and (run / "model.pt").is_file()
