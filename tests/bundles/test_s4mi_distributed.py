"""s4mi multi_gpu_train.json with 2 CPU processes (torch.distributed.run, gloo): both workflows train under DDP with
sharded data, the checkpoints hold the unwrapped networks, and the report is written once.

On CPU the config runs as on GPUs except for what only an accelerator has: NCCL (``dist_backend`` is ``gloo`` here)
and SyncBatchNorm (``sync_batchnorm`` is ``device.type == 'cuda'``, so plain per-rank BatchNorm here)."""

from __future__ import annotations

import json
import math

import torch
from monai.bundle import ConfigParser
from torch.utils.data.distributed import DistributedSampler

from monai_osteo.bundle.s4mi import (
    classification_records,
    load_classifier,
    load_segmentation_network,
    load_state,
    segmentation_data,
    ssl_records,
)
from monai_osteo.data.samplers import TwoStreamBatchSampler
from monai_osteo.networks.nets import CASSNetwork, s4mi_classifier
from tests.bundles.distributed import run_distributed
from tests.bundles.s4mi_tiny import ARCH, CONFIGS, tiny

#: written by every training stage on every rank after training: the batches its train loader's (batch) sampler
#: yields in the last epoch (the sampler objects the loader iterated) and the trainer's epoch length
RECORDER = {"finalize": [
    "$torch.save({'rank': torch.distributed.get_rank(), 'world': torch.distributed.get_world_size(), "
    "'batches': [[int(i) for i in b] for b in @train#dataloader.batch_sampler], "
    "'sampler_epoch': getattr(@train#dataloader.batch_sampler, 'epoch', getattr(@train#dataloader.sampler, 'epoch', "
    "None)), 'epoch_length': @train#trainer.state.epoch_length}, "
    "os.path.join(@stage_dir, 'batches_rank' + str(torch.distributed.get_rank()) + '.pt'))"]}


def _recorded(folder):
    out = [torch.load(folder / f"batches_rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [o["rank"] for o in out] == [0, 1] and all(o["world"] == 2 for o in out)  # both ranks finished it
    return out


def test_multi_gpu_train_runs_both_workflows_distributed_on_cpu(tmp_path):
    """2 ranks (gloo, CPU): CASS pre-training (CNN + ViT: unused ViT parameters), supervised fine-tuning and
    cross-teaching run under DDP; plain loaders are sharded by DistributedSampler, the two-stream batches are dealt
    round-robin (disjoint labelled images, union = the single-process batches); every checkpoint loads strictly into
    the plain network; the report has each row once."""
    (tmp_path / "recorder.json").write_text(json.dumps(RECORDER))
    cpu = {"device": "$torch.device('cpu')", "dist_backend": "gloo",
           "training_configs": ["multi_gpu_stage.json", str(tmp_path / "recorder.json")]}
    over = tiny(tmp_path, cls_methods=["cass", "supervised"], cls_backbones=["cnn"], cls_fractions=[0.5],
                seg_methods=["cross_teaching"], seg_fractions=[0.5], seg_batch_size=4, seg_max_iterations=2,
                cass_projection_dim=16)
    run_distributed(CONFIGS, {"cpu.json": cpu, "tiny.json": over}, tmp_path)
    run, datalist = tmp_path / "run", str(tmp_path / "data/skin/datalist.json")
    cls, seg = run / "classification", run / "segmentation"

    # plain loaders: rank r trains on the batches of its DistributedSampler shard
    for stage, n, drop_last in (("pretrain_cass", len(ssl_records(datalist)), True),
                                ("supervised_cnn@50", len(classification_records(datalist, ["training"], 3, False,
                                                                                 0.5, 0)), False)):
        for r, rec in enumerate(_recorded(cls / stage)):
            shard = DistributedSampler(range(n), num_replicas=2, rank=r, shuffle=True, seed=0)
            shard.set_epoch(rec["sampler_epoch"])
            per_rank = math.ceil(n / 2)
            assert rec["epoch_length"] == len(rec["batches"]) == (per_rank // 8 if drop_last else -(-per_rank // 8))
            assert sum(rec["batches"], []) == list(shard)[:per_rank // 8 * 8 if drop_last else None], stage
    assert len(_recorded(cls / "pretrain_cass")[0]["batches"]) >= 2  # DDP meets the unused ViT parameters again

    # cross-teaching: the single-process two-stream batches dealt round-robin
    data = segmentation_data(datalist, "mask", 0.5, 0)
    recs = _recorded(seg / "cross_teaching@50")
    single = TwoStreamBatchSampler(data["primary"], data["secondary"], 4, 2, seed=0)
    single.set_epoch(recs[0]["sampler_epoch"])
    batches = list(single)
    assert len(batches) == 2 * len(recs[0]["batches"]) == 2 * len(recs[1]["batches"])
    for r, rec in enumerate(recs):
        assert rec["batches"] == batches[r::2] and rec["epoch_length"] == len(batches) // 2
        assert all(set(b[:2]) <= set(data["primary"]) and set(b[2:]) <= set(data["secondary"]) for b in rec["batches"])
    labelled = [{i for b in rec["batches"] for i in b[:2]} for rec in recs]
    assert not labelled[0] & labelled[1]
    assert sorted(recs[0]["batches"] + recs[1]["batches"]) == sorted(batches)

    # checkpoints: the unwrapped networks (no "module." prefix), loaded strictly into plain networks
    for f in [*run.rglob("model.pt"), *run.rglob("last.pt")]:
        assert not any(k.startswith("module.") for k in load_state(f)), f
    CASSNetwork(s4mi_classifier(ARCH["cnn_arch"], 3, 16, 32), s4mi_classifier(ARCH["vit_arch"], 3, 16, 32, 8)
                ).load_state_dict(load_state(cls / "pretrain_cass/model.pt"))
    for row in ("cass_cnn@50", "supervised_cnn@50"):
        load_classifier(s4mi_classifier(ARCH["cnn_arch"], 3, 3, 32), cls / row / "model.pt")
    for net in ("unet", "swin"):
        load_segmentation_network(seg / "cross_teaching@50/model.pt", "cross_teaching", net, 3,
                                  ARCH["seg_image_size"], ARCH["unet_features"], 0.1, ARCH["swin_feature_size"])

    report = json.loads((run / "report/metrics.json").read_text())
    assert sorted((r["method"], r["backbone"]) for r in report["classification"]) == [("cass", "cnn"),
                                                                                     ("supervised", "cnn")]
    assert sorted(r["net"] for r in report["segmentation"]) == ["swin", "unet"]
    assert all(json.loads(p.read_text())["status"] == "done" for p in run.rglob("stage.json"))


def test_unused_parameter_detection_only_where_a_network_needs_it(tmp_path):
    """``find_unused_parameters`` (an extra autograd traversal per step) is on for the networks with parameters that
    get no gradient (DINO's unused backbone head, MONAI ViT's cross-attention norms) and off for the others."""
    over = tiny(tmp_path)
    cases = ((["pretrain_cass.json"], {}, True),
             (["pretrain_dino.json"], {"backbone": "cnn"}, True),
             (["classify.json"], {"method": "supervised", "backbone": "cnn"}, False),
             (["classify.json"], {"method": "supervised", "backbone": "vit"}, True),
             (["segment.json"], {"seg_method": "supervised_swin"}, False),
             (["segment.json", "cross_teaching.json"], {"seg_method": "cross_teaching"}, False))
    for configs, extra, expected in cases:
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / c) for c in ["train.json", *configs, "multi_gpu_stage.json"]])
        parser.update({**over, **extra})
        assert parser.get_parsed_content("find_unused_parameters") is expected, (configs, extra)
