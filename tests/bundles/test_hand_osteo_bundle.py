"""The hand_osteo bundle, reduced: the stage chain of train.json, each stage config as a standard MONAI workflow,
resume and re-run rules, evaluation, inference with and without weights, exports, ablations, bad inputs."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ckpt_export, verify_net_in_out

from tests.bundles.hand_osteo_tiny import ARCH, BUNDLE, CONFIGS, tiny_train, workflow
from tests.utils import assert_allclose

ABLATIONS = sorted(p.stem for p in (CONFIGS / "ablations").glob("*.json"))
STAGE_CONFIGS = {"extract_patches.json": "infer", "train_ssl.json": "train", "train_probe.json": "train",
                 "train_supervised.json": "train", "inference.json": "infer", "evaluate.json": None,
                 "fit_gates.json": "infer"}
#: stage configs layered on more than train.json
LAYERS = {"fit_gates.json": ["train.json", "inference.json", "fit_gates.json"]}
TINY = {"subjects": 40, "unlabeled": 12, "height": 192}


def _chain(root: Path, **over):
    wf = workflow("train.json", None, **tiny_train(root, **over))
    wf.run()
    wf.finalize()
    return wf


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hand_osteo")
    _chain(root)
    return root


def _mtimes(run: Path) -> dict:
    return {s: (run / s / "model.pt").stat().st_mtime_ns for s in ("segmentation", "ssl", "probe")}


def test_train_writes_models_metrics_and_figures(trained):
    run = trained / "run"
    for name in ("model.pt", "segmentation.pt", "run.json", "segmentation/model.pt", "segmentation/last.pt",
                 "segmentation/metrics.csv", "patches/index.json", "ssl/model.pt", "ssl/last.pt", "probe/model.pt",
                 "probe/probe.pt", "probe/metrics.csv", "gates.pt", "gates.json",
                 "eval/metrics.json", "eval/metrics.md", "eval/roc.png",
                 "eval/bone_contributions.png", "eval/predictions.json"):
        assert (run / name).is_file(), name
    for stage in ("segmentation", "patches", "ssl", "probe", "gates", "eval"):
        assert json.loads((run / stage / "stage.json").read_text())["status"] == "done"
    index = json.loads((run / "patches/index.json").read_text())
    bones = {r["bone"] for r in index["patches"]}
    assert bones and bones <= {"ulna", "radius", "M1", "M2", "M3", "M4", "M5"}
    assert all(r["split"] == "training" for r in index["patches"] if "ssl" in r["role"])  # never test subjects
    summary = json.loads((run / "eval/metrics.json").read_text())["summary"]
    assert set(summary) == {"precision", "recall", "f1", "auc", "accuracy"}
    for s in json.loads((run / "eval/predictions.json").read_text()):  # Eq. 10: the mean of the bones
        p = np.mean(list(s["bone_probabilities"].values()))
        assert abs(p - s["probability"]) < 1e-6 and s["decision"] == int(p >= 0.5)


def test_exported_classifier_is_encoder_plus_folded_probe(trained):
    """model.pt maps a patch to the logits of LinearProbe(encoder features) exactly."""
    from monai_osteo.networks.nets import BoneClassifier, LinearProbe

    run = trained / "run"
    clf = BoneClassifier(backbone=ARCH["backbone"])
    clf.load_state_dict(torch.load(run / "model.pt"))
    ref = BoneClassifier(backbone=ARCH["backbone"]).load_encoder(torch.load(run / "ssl/model.pt"))
    probe = LinearProbe(clf.feature_dim)
    probe.load_state_dict(torch.load(run / "probe/probe.pt"))
    x = torch.rand(4, 1, ARCH["global_size"], ARCH["global_size"])
    with torch.no_grad():
        assert_allclose(clf.eval()(x), probe.eval()(ref.eval().backbone(x)), atol=1e-4, rtol=1e-4)


def test_rerun_skips_every_stage_and_a_changed_setting_reruns_only_downstream(trained, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(trained, root)
    # the copy lives elsewhere: paths are not part of a stage's fingerprint, content is
    before = _mtimes(root / "run")
    _chain(root)
    assert _mtimes(root / "run") == before
    _chain(root, probe_lr=0.01)
    after = _mtimes(root / "run")
    assert after["segmentation"] == before["segmentation"] and after["ssl"] == before["ssl"]
    assert after["probe"] != before["probe"]
    # any id of a stage, from train.json
    _chain(root, probe_lr=0.01, **{"stage_overrides#probe": {"train#trainer#max_epochs": 2}})
    probe = torch.load(root / "run/probe/last.pt", weights_only=False)["trainer"]
    assert probe["iteration"] == 2 * probe["epoch_length"] and _mtimes(root / "run")["ssl"] == before["ssl"]
    # another seed changes every stage
    _chain(root, probe_lr=0.01, seed=1)
    assert all(_mtimes(root / "run")[k] != after[k] for k in after)


@pytest.mark.parametrize("name", sorted(STAGE_CONFIGS))
def test_every_stage_config_passes_check_properties(trained, name):
    kind = STAGE_CONFIGS[name]
    wf = workflow(LAYERS.get(name, ["train.json", name]), kind, **tiny_train(trained))
    if kind is not None:
        assert wf.check_properties() == []


def test_inference_checks_with_no_weights_and_no_data(tmp_path):
    wf = workflow(["train.json", "inference.json"], "infer", bundle_root=str(BUNDLE),
                  output_dir=str(tmp_path / "no_models"), dataset_dir=str(tmp_path / "no_inputs"))
    assert wf.check_properties() == []


def test_stage_config_alone_with_standard_overrides_resumes(trained, tmp_path):
    """train_ssl.json alone: ``train#trainer#max_epochs 2`` continues the finished 1-epoch run from last.pt."""
    root = tmp_path / "copy"
    shutil.copytree(trained, root)
    over = tiny_train(root, **{"train#trainer#max_epochs": 2})
    wf = workflow(["train.json", "train_ssl.json"], "train", **over)
    assert wf.check_properties() == []
    trainer = wf.parser.get_parsed_content("train#trainer")
    wf.run()
    last = torch.load(root / "run/ssl/last.pt", weights_only=False)["trainer"]
    assert trainer.state.epoch == 2 and last["iteration"] == 2 * trainer.state.epoch_length


def test_evaluate_two_runs_with_the_same_folder_name(trained, tmp_path):
    runs = []
    for seed in ("seed0", "seed1"):
        shutil.copytree(trained / "run", tmp_path / seed / "run")
        runs.append(str(tmp_path / seed / "run"))
    wf = workflow(["train.json", "evaluate.json"], None, **tiny_train(trained), run_dirs=runs,
                  eval_dir=str(tmp_path / "eval"))
    wf.run()
    result = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert sorted(result["runs"]) == ["seed0/run", "seed1/run"] and result["summary"]["auc"]["n"] == 2
    assert "mean ± std" in (tmp_path / "eval/metrics.md").read_text()


def _inputs(trained: Path, folder: Path) -> list[Path]:
    folder.mkdir()
    images = sorted((trained / "data" / "images").glob("*.png"))[:2]
    for p in images:
        shutil.copy(p, folder / f"Doe_John_{p.name}")
    from tests.data.reader_files import pydicom_data

    for name in ("RG1_UNCR.dcm", "RG3_UNCR.dcm"):
        shutil.copy(pydicom_data(name), folder / name)
    (folder / "corrupt_Roe.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    (folder / "truncated_Roe.png").write_bytes(images[0].read_bytes()[:200])
    return sorted(folder.iterdir())


@pytest.mark.parametrize("weights", [True, False])
def test_inference_reports_and_bad_files(trained, tmp_path, caplog, weights):
    _inputs(trained, tmp_path / "in")
    out = tmp_path / "out"
    over = {**tiny_train(trained), "dataset_dir": str(tmp_path / "in"), "report_dir": str(out)}
    if not weights:  # the model zoo's "inference with the checkpoint handler disabled"
        over.update({"handlers#0#_disabled_": True, "handlers#1#_disabled_": True})
    with caplog.at_level(logging.INFO):
        wf = workflow(["train.json", "inference.json"], "infer", **over)
        assert wf.check_properties() == []
        wf.run()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 4 and summary["failed"] == 2
    assert all("source" not in f for f in summary["failures"])
    names = [p.name for p in out.iterdir()]
    assert not any(s in n for n in names for s in ("Doe", "Roe", "RG1")) and not any(n.startswith(".") for n in names)
    assert not any(s in json.dumps(summary) for s in ("Doe", "Roe", "RG1", str(tmp_path)))
    assert not any(s in caplog.text for s in ("Roe", "corrupt_", "truncated_"))  # nor in the log
    reports = sorted(out.glob("r*.json"))
    assert len(reports) == 4 and len(list(out.glob("r*.png"))) == 4
    for path in reports:
        r = json.loads(path.read_text())
        assert set(r["bone_probabilities"]) == {"ulna", "radius", "M1", "M2", "M3", "M4", "M5"}
        assert set(r["bones_found"]) | set(r["bones_missing"]) == set(r["bone_probabilities"])
        assert set(r["qc_flags"]) <= {"missing_bones", "low_segmentation_confidence", "not_a_hand_radiograph",
                                      "implausible_input", "implausible_anatomy", "out_of_distribution"}
        assert [g["gate"] for g in r["gates"]] == ["input", "anatomy", "features"]
        failed = [g for g in r["gates"] if g["passed"] is False]
        assert (r["decision"] == -1) == (bool(failed) or not r["bones_found"])
        assert [g["flag"] for g in failed] == [f for f in r["qc_flags"] if f in {g["flag"] for g in r["gates"]}]
        found = [p for p in r["bone_probabilities"].values() if p is not None]
        if found and not failed:  # Eq. 10 in the report
            assert abs(np.mean(found) - r["probability"]) < 1e-6
        assert "source" not in r


def test_inference_record_source_keeps_paths(trained, tmp_path):
    _inputs(trained, tmp_path / "in")
    over = {**tiny_train(trained), "dataset_dir": str(tmp_path / "in"), "report_dir": str(tmp_path / "out"),
            "record_source": True, "report_png": False}
    workflow(["train.json", "inference.json"], "infer", **over).run()
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert {Path(f["source"]).name for f in summary["failures"]} == {"corrupt_Roe.dcm", "truncated_Roe.png"}
    reports = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("r*.json")]
    reports = {Path(r["source"]).name: r for r in reports}
    chest, leg = reports["RG1_UNCR.dcm"], reports["RG3_UNCR.dcm"]  # real CRs of a chest and a lower leg: refused
    assert chest["decision"] == -1 and chest["decision_name"].startswith("no decision: ")
    assert "implausible_input" in chest["qc_flags"] and "body part CHEST" in chest["decision_name"]
    assert leg["decision"] == -1 and np.isnan(leg["probability"])


def test_exports_match_eager(trained, tmp_path):
    run = trained / "run"
    over = tiny_train(trained)
    args = {"meta_file": str(CONFIGS / "metadata.json"),
            "config_file": [str(CONFIGS / "train.json"), str(CONFIGS / "inference.json")]}
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(run / "model.pt"),
                **args, **over)
    ckpt_export(net_id="segmentation_mean_def", filepath=str(tmp_path / "segmentation.ts"),
                ckpt_file=str(run / "segmentation.pt"), **args, **over)
    wf = workflow(["train.json", "inference.json"], "infer", **over)
    clf = wf.parser.get_parsed_content("network_def")
    clf.load_state_dict(torch.load(run / "model.pt", map_location="cpu"))
    seg = wf.parser.get_parsed_content("segmentation_mean_def")
    seg.load_state_dict(torch.load(run / "segmentation.pt", map_location="cpu"))
    x = torch.rand(3, 1, ARCH["global_size"], ARCH["global_size"])
    assert_allclose(torch.jit.load(str(tmp_path / "model.ts"))(x), clf.eval()(x), atol=1e-5, rtol=1e-4)
    y = torch.rand(2, 1, *ARCH["seg_spatial_size"])
    assert_allclose(torch.jit.load(str(tmp_path / "segmentation.ts"))(y), seg.eval()(y), atol=1e-5, rtol=1e-4)


def test_verify_net_in_out():
    verify_net_in_out(net_id="network_def", meta_file=str(CONFIGS / "metadata.json"),
                      config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "inference.json")], device="cpu",
                      bundle_root=str(BUNDLE))


@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_overrides_run(trained, tmp_path, name):
    """Each ablation override runs reduced; segmentation is shared with the trained run when equal."""
    over = tiny_train(trained, output_dir=str(tmp_path / name), segmentation_dir=str(trained / "run" / "segmentation"))
    wf = workflow(["train.json", f"ablations/{name}.json"], None, **over)
    wf.run()
    metrics = json.loads((tmp_path / name / "eval" / "metrics.json").read_text())
    assert "auc" in metrics["summary"]
    manifest = json.loads((tmp_path / name / "run.json").read_text())
    if name == "no_segmentation":
        assert manifest["patch_mode"] == "random"
    if name == "supervised_only":
        assert manifest["ssl"] is None and not (tmp_path / name / "ssl").exists()


def test_user_dataset_dir_without_datalist_is_an_error(tmp_path):
    folder = tmp_path / "my_data"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"x")
    wf = workflow("train.json", None, **tiny_train(tmp_path), dataset_dir=str(folder))
    with pytest.raises(RuntimeError) as e:
        wf.run()
    assert "no datalist.json" in str(e.value.__cause__ or e.value)
    assert sorted(p.name for p in folder.iterdir()) == ["a.png"]  # nothing generated into the user's folder
    wf = workflow("train.json", None, **tiny_train(tmp_path), dataset_dir=str(folder), datalist_file="datalst.json")
    with pytest.raises(RuntimeError) as e:
        wf.run()
    assert "datalist_file not found" in str(e.value.__cause__ or e.value)


def test_multi_gpu_config_runs_distributed_on_cpu(trained, tmp_path):
    """multi_gpu_train.json with 2 processes (gloo, CPU, plain DDP instead of NCCL + SyncBatchNorm): SSL is sharded,
    the other stages run once, and the evaluation's predictions line up with their patches."""
    from monai_osteo.engines.hand_osteo import ScreeningEvaluation
    from monai_osteo.networks.nets import BoneClassifier
    from tests.bundles.distributed import run_distributed

    cpu_ssl = {"network": "$torch.nn.parallel.DistributedDataParallel(@network_def)"}
    cpu = {"device": "$torch.device('cpu')",
           "ssl_configs": ["train_ssl.json", "multi_gpu_ssl.json", str(tmp_path / "cpu_ssl.json")],
           "initialize": ["$dist.is_initialized() or dist.init_process_group(backend='gloo')",
                          "$monai.utils.set_determinism(seed=@seed)"]}
    tiny = tiny_train(tmp_path, ssl_batch_size=4)
    (tmp_path / "cpu_ssl.json").write_text(json.dumps(cpu_ssl))
    run_distributed(CONFIGS, {"cpu.json": cpu, "tiny.json": tiny}, tmp_path)
    run = tmp_path / "run"
    n_patches = sum("ssl" in r["role"] for r in json.loads((run / "patches/index.json").read_text())["patches"])
    last = torch.load(run / "ssl/last.pt", weights_only=False)["trainer"]
    assert last["epoch_length"] == (n_patches + 1) // 2 // 4  # each rank trains on its shard
    written = {s["subject_id"]: s["probability"] for s in json.loads((run / "eval/predictions.json").read_text())}
    again = ScreeningEvaluation([run], tmp_path / "again", BoneClassifier(backbone=ARCH["backbone"])).run()
    recomputed = {s["subject_id"]: s["probability"]
                  for s in json.loads((tmp_path / "again/predictions.json").read_text())}
    assert written.keys() == recomputed.keys() and again["summary"]["auc"]["n"] == 1
    for k, v in written.items():
        assert abs(v - recomputed[k]) < 1e-5, k


def test_out_of_distribution_images_get_no_decision(trained, tmp_path):
    """A representative subset of the OOD set (3 per category: chest and leg CRs, CT/MR, photos, phantoms without a
    hand, noise, a constant image): screened with inference.json, none gets a decision."""
    from monai_osteo.data.ood_set import build_ood_set

    records = build_ood_set(tmp_path / "ood", per_category=3)
    over = {**tiny_train(trained), "input_files": [r["image"] for r in records], "report_dir": str(tmp_path / "out"),
            "report_png": False}
    workflow(["train.json", "inference.json"], "infer", **over).run()
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    unreadable = sum(r["expect"] == "read_error" for r in records)
    assert summary["failed"] == unreadable and summary["count"] == len(records) - unreadable
    assert all(s["decision"] == -1 for s in summary["screened"])
    for path in (tmp_path / "out").glob("r*.json"):
        r = json.loads(path.read_text())
        assert r["decision_name"].startswith("no decision") and r["qc_flags"]
