"""medsass bundle in the model-zoo pattern: every stage is a standard MONAI workflow, train.json runs every protocol
kind on the tiny skin phantom, re-runs skip finished stages, MedSASS learns from Otsu alone, multi_gpu_train.json runs
with 2 processes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ignite.engine import Events

from monai_osteo.bundle import run_stages
from tests.bundles.distributed import run_distributed
from tests.bundles.medsass_tiny import ARCH, CONFIGS, TINY_PROTOCOLS, tiny_train, workflow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("medsass")
    wf = workflow("train.json", None, **tiny_train(root))
    wf.run()
    return root


def test_stage_configs_are_standard_train_workflows(trained):
    over = tiny_train(trained)
    for config, extra in (("pretrain.json", {}), ("pretrain_ssl.json", {"ssl_method": "dino"}),
                          ("finetune.json", {"transfer": "scratch", "init_checkpoint": None})):
        wf = workflow(["train.json", config], "train", **over, **extra)
        assert wf.check_properties() in (None, [])


def test_train_json_writes_every_row_and_skips_finished_stages(trained):
    report = json.loads((trained / "run/report/metrics.json").read_text())
    rows = {r["row"]: r for r in report["rows"]}
    expected = {"reference_all_foreground", "reference_otsu", "zero_shot_ed", "zero_shot_e", "zero_shot_e_dino",
                "frozen_e@100", "finetune_scratch@100", "finetune_e@10", "finetune_e@100", "finetune_ed@100",
                "finetune_byol@10", "finetune_simsiam@10"}
    assert set(rows) == expected
    for r in rows.values():
        assert 0.0 <= r["iou"] <= 1.0 and r["iou"] <= r["dice"] + 1e-6, r
    # all-foreground IoU is the mean foreground fraction, Otsu-dark finds the lesions better than that
    assert rows["reference_otsu"]["iou"] > rows["reference_all_foreground"]["iou"] + 0.1
    assert rows["zero_shot_ed"]["paper_iou"] == 0.4847
    assert (trained / "run/report/overlays.png").stat().st_size > 10_000
    assert "| reference_otsu | 0% |" in (trained / "run/report/metrics.md").read_text()
    wf = workflow("train.json", None, **tiny_train(trained))
    stages = wf.parser.get_parsed_content("stages")
    records = run_stages(stages, wf.parser.get_parsed_content("stage_settings"), wf.parser.get_parsed_content(
        "datalist"), str(CONFIGS / "metadata.json"))
    assert all(r["skipped"] for r in records) and len(records) == len(stages)


def test_a_changed_setting_reruns_only_from_its_stage(trained):
    """Changing the fine-tuning epochs re-runs the trained rows, not the pre-trainings and zero-shot rows before."""
    wf = workflow("train.json", None, **tiny_train(trained, finetune_epochs=2))
    records = run_stages(wf.parser.get_parsed_content("stages"), wf.parser.get_parsed_content("stage_settings"),
                         wf.parser.get_parsed_content("datalist"), str(CONFIGS / "metadata.json"))
    ran = {r["name"]: r["skipped"] for r in records}
    assert ran["pretrain"] and ran["pretrain_dino"] and ran["test_zero_shot_e_dino"] and not ran["frozen_e@100"]
    assert not ran["finetune_scratch@100"] and not ran["report"]
    last = torch.load(trained / "run/finetune_scratch@100/last.pt", weights_only=False)
    state = last["trainer"]
    assert state["max_epochs"] == 2 and state["iteration"] == 2 * state["epoch_length"]


def test_medsass_learns_otsu_without_labels(tmp_path):
    """Pre-training on the tiny skin phantom with no label: the loss falls and the zero-shot U-Net (E+D) beats the
    all-foreground reference by a clear margin (the Otsu-dark pseudo-masks carry the lesion)."""
    over = tiny_train(tmp_path, image_size=[64, 64], pretrain_epochs=12, learning_rate=3e-3, lr_eta_min=3e-3,
                      patience=12, ssl_baselines=[], protocols=TINY_PROTOCOLS[:1])
    pre = workflow(["train.json", "pretrain.json"], "train", **over, stage_dir=str(tmp_path / "run/pretrain"))
    losses = []
    trainer = pre.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    pre.run()
    assert min(losses[-3:]) < 0.8 * losses[0], losses
    metrics = {}
    for ref, model in (("ed", "unet"), ("fg", "all_foreground"), ("otsu", "otsu")):
        ev = workflow(["train.json", "evaluate.json"], None, **over, row=f"r_{ref}", eval_model=model,
                      transfer="full", init_checkpoint=str(tmp_path / "run/pretrain/model.pt"))
        ev.run()
        metrics[ref] = ev.parser.get_parsed_content("test#evaluator").state.metrics["test_iou"]
    print(f"\ntiny skin zero-shot IoU: MedSASS E+D {metrics['ed']:.3f}, all-foreground {metrics['fg']:.3f}, "
          f"Otsu-direct {metrics['otsu']:.3f}; pre-training loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert metrics["ed"] > metrics["fg"] + 0.08


def test_user_dataset_without_datalist_is_an_error(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    wf = workflow("train.json", None, **tiny_train(tmp_path), dataset_dir=str(folder))
    with pytest.raises(RuntimeError) as e:
        wf.run()
    assert "no datalist.json" in str(e.value.__cause__ or e.value)
    assert list(folder.iterdir()) == []  # nothing generated into the user's folder


def test_every_setting_of_train_json_reaches_its_stages():
    config = json.loads((CONFIGS / "train.json").read_text())
    structural = {"imports", "config_dir", "meta_file", "dataset_dir", "datalist_file", "phantom_preset",
                  "phantom_overrides", "phantom_dir", "cohort_settings", "stage_settings", "stage_overrides", "stages",
                  "initialize", "run", "finalize", "network_def", "losses", "loss", "pseudo_labels", "load_transforms",
                  "augmentation", "ssl_view_augmentation", "final_transforms", "postprocessing", "protocol_rows",
                  "training_configs"}
    passed = {v[1:] for v in config["stage_settings"].values()}
    assert sorted(set(config) - structural - passed) == []


def test_multi_gpu_config_runs_distributed_on_cpu(tmp_path):
    """multi_gpu_train.json with 2 processes (gloo, CPU, plain DDP): the pre-training is sharded, the evaluations
    run on every rank and agree, the report is written once."""
    cpu_stage = {"network": "$torch.nn.parallel.DistributedDataParallel(@net.to(@device))"}
    (tmp_path / "cpu_stage.json").write_text(json.dumps(cpu_stage))
    cpu = {"device": "$torch.device('cpu')",
           "training_configs": ["multi_gpu_stage.json", str(tmp_path / "cpu_stage.json")],
           "initialize": ["$dist.is_initialized() or dist.init_process_group(backend='gloo')",
                          "$monai.utils.set_determinism(seed=@seed)"]}
    tiny = tiny_train(tmp_path, ssl_baselines=[], protocols=TINY_PROTOCOLS[:1] + [
        {"name": "finetune_e", "init": "medsass", "transfer": "encoder", "fractions": [1.0]}])
    run_distributed(CONFIGS, {"cpu.json": cpu, "tiny.json": tiny}, tmp_path)
    run = tmp_path / "run"
    n_images = sum(len(v) for k, v in json.loads((tmp_path / "data/datalist.json").read_text()).items()
                   if k in ("training", "unlabeled"))
    last = torch.load(run / "pretrain/last.pt", weights_only=False)["trainer"]
    per_rank = math.ceil(n_images / 2)  # each rank trains on its shard
    assert last["epoch_length"] == math.ceil(per_rank / 8)
    state = torch.load(run / "finetune_e@100/model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)  # DDP unwrapped in the checkpoint
    report = json.loads((run / "report/metrics.json").read_text())
    assert {r["row"] for r in report["rows"]} == {"reference_all_foreground", "reference_otsu", "zero_shot_ed",
                                                  "finetune_e@100"}
    assert ARCH["image_size"] == [32, 32]
