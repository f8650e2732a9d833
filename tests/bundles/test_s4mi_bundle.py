"""s4mi bundle in the model-zoo pattern: every stage is a standard MONAI workflow, train.json runs both workflows
(CASS/DINO/supervised classification, cross-teaching/supervised segmentation) on the tiny skin phantom, re-runs skip
finished stages, label fractions are nested, and each workflow learns."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ignite.engine import Events
from PIL import Image

from monai_osteo.bundle import run_stages
from monai_osteo.bundle.s4mi import classification_records, segmentation_data, segmentation_records
from tests.bundles.s4mi_tiny import CONFIGS, tiny, workflow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("s4mi")
    torch.set_num_threads(1)
    wf = workflow("train.json", None, **tiny(root))
    wf.run()
    return root


def test_stage_configs_are_standard_train_workflows(trained):
    over = tiny(trained)
    for configs, extra in ((["train.json", "pretrain_cass.json"], {}),
                           (["train.json", "pretrain_dino.json"], {"backbone": "vit"}),
                           (["train.json", "classify.json"], {"method": "supervised", "backbone": "cnn"}),
                           (["train.json", "segment.json"], {"seg_method": "supervised_swin"}),
                           (["train.json", "segment.json", "cross_teaching.json"], {"seg_method": "cross_teaching"})):
        wf = workflow(configs, "train", **over, **extra)
        assert wf.check_properties() in (None, []), configs


def test_train_json_writes_every_row_and_skips_finished_stages(trained):
    report = json.loads((trained / "run/report/metrics.json").read_text())
    cls = {(r["method"], r["backbone"]): r for r in report["classification"]}
    assert set(cls) == {(m, b) for m in ("cass", "dino", "supervised") for b in ("cnn", "vit")}
    for r in cls.values():
        assert 0.0 <= r["f1"] <= 1.0 and 0.0 <= r["recall"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0, r
        assert r["paper"] is None  # the paper reports 10 % and 100 % only
    seg = {(r["method"], r["net"]): r for r in report["segmentation"]}
    assert set(seg) == {("cross_teaching", "unet"), ("cross_teaching", "swin"), ("supervised_unet", "unet")}
    for r in seg.values():
        assert 0.0 <= r["iou"] <= r["dice"] + 1e-6 <= 1.0 + 1e-6, r
    assert report["paper_dataset"] == "ISIC-2017" and report["paper_metric"] == "recall"
    floor = report["classification_floor"]  # the constant training-prevalence classifier: argmax = majority class
    assert floor["balanced_accuracy"] == pytest.approx(1 / 3) and 0.0 < floor["f1"] < 1.0
    assert (trained / "run/report/segmentation_iou.png").stat().st_size > 5_000
    md = (trained / "run/report/metrics.md").read_text()
    assert "| cass | ViT | 50% |" in md and "| constant (training prevalence) |" in md
    for stage in ("pretrain_cass", "pretrain_dino_cnn", "pretrain_dino_vit", "cass_vit@50", "supervised_cnn@50"):
        assert (trained / "run/classification" / stage / "model.pt").is_file(), stage
    wf = workflow("train.json", None, **tiny(trained))
    stages = wf.parser.get_parsed_content("stages")
    records = run_stages(stages, wf.parser.get_parsed_content("stage_settings"),
                         wf.parser.get_parsed_content("datalist"), str(CONFIGS / "metadata.json"))
    assert all(r["skipped"] for r in records) and len(records) == len(stages)


def test_a_user_datalist_with_its_own_classes_reaches_every_stage(trained, tmp_path):
    """``--num_classes``/``--multilabel`` of a user's datalist reach the stages run by ``train.json`` (they are
    stage settings): a 4-class multi-label datalist over the tiny phantom's images trains a 4-way head."""
    src = json.loads((trained / "data/skin/datalist.json").read_text())
    rng = np.random.default_rng(0)

    def item(d):
        return {"image": str(trained / "data/skin" / d["image"]), "label": [int(v) for v in rng.integers(0, 2, 4)]}

    user = {k: [item(d) for d in src[k]] for k in ("training", "validation", "test")}
    for k in user:  # every class positive and negative somewhere in each split
        user[k][0]["label"], user[k][1]["label"] = [1, 1, 1, 1], [0, 0, 0, 0]
    (tmp_path / "datalist.json").write_text(json.dumps(user))
    over = {**tiny(tmp_path), "datalist_file": str(tmp_path / "datalist.json"), "num_classes": 4, "multilabel": True,
            "workflows": ["classification"], "cls_methods": ["supervised"], "cls_backbones": ["cnn"],
            "cls_fractions": [1.0]}
    workflow("train.json", None, **over).run()
    state = torch.load(tmp_path / "run/classification/supervised_cnn@100/model.pt", map_location="cpu")
    heads = [v for k, v in state.items() if k.endswith("head.weight")]
    assert len(heads) == 1 and heads[0].shape[0] == 4
    report = json.loads((tmp_path / "run/report/metrics.json").read_text())
    assert [r["method"] for r in report["classification"]] == ["supervised"]
    assert report["classification"][0]["balanced_accuracy"] is None  # multi-label: no argmax metrics


def test_label_fractions_are_nested_stratified_and_streams_disjoint(trained):
    datalist = str(trained / "data/skin/datalist.json")
    subsets = [{r["image"] for r in classification_records(datalist, ["training"], 3, False, f, seed=0)}
               for f in (0.1, 0.3, 0.5, 0.7, 1.0)]
    assert all(a < b for a, b in zip(subsets, subsets[1:]))
    assert len({tuple(r["label"]) for r in classification_records(datalist, ["training"], 3, False, 0.1)}) == 3
    assert subsets[0] != {r["image"] for r in classification_records(datalist, ["training"], 3, False, 0.1, seed=1)}
    labelled = [set(segmentation_data(datalist, "mask", f)["primary"]) for f in (0.1, 0.5, 1.0)]
    images = [{r["image"] for r in segmentation_data(datalist, "mask", f)["labelled"]} for f in (0.1, 0.5, 1.0)]
    assert images[0] < images[1] < images[2] and len(labelled[2]) == len(images[2])
    half = segmentation_data(datalist, "mask", 0.5)
    recs = half["records"]
    assert all("label" in recs[i] for i in half["primary"]) and not any("label" in recs[i] for i in half["secondary"])
    assert not {recs[i]["image"] for i in half["primary"]} & {recs[i]["image"] for i in half["secondary"]}
    full = segmentation_data(datalist, "mask", 1.0)  # 100 %: the unlabelled stream reuses the training images
    assert {full["records"][i]["image"] for i in full["primary"]} <= {full["records"][i]["image"]
                                                                      for i in full["secondary"]}


def test_cross_teaching_batches_are_labelled_first(trained):
    for fraction, unlabelled in ((0.5, 4), (1.0, 1)):
        wf = workflow(["train.json", "segment.json", "cross_teaching.json"], "train", **tiny(trained),
                      seg_method="cross_teaching", label_fraction=fraction)
        assert wf.parser.get_parsed_content("unlabeled_batch_size") == unlabelled
        data = wf.parser.get_parsed_content("seg_data")
        loader = wf.parser.get_parsed_content("train#dataloader")
        sampler = loader.batch_sampler
        first = next(iter(sampler))
        lb = 8 - unlabelled
        assert len(first) == 8 and set(first[:lb]) <= set(data["primary"])
        assert set(first[lb:]) <= set(data["secondary"])
        batch = next(iter(loader))
        assert batch["image"].shape == (8, 3, 64, 64) and batch["label"].shape == (8, 1, 64, 64)
        assert float(batch["label"][lb:].abs().sum()) == 0.0  # placeholders, never read


def test_cls_class_weights_reach_the_focal_loss(trained):
    """``cls_class_weights: balanced`` weights the fine-tuning focal loss by the kept labelled images' class counts
    (scikit-learn's definition); the paper-literal default leaves it unweighted."""
    from sklearn.utils.class_weight import compute_class_weight

    over = {**tiny(trained), "method": "supervised", "backbone": "cnn", "label_fraction": 0.5}
    assert workflow(["train.json", "classify.json"], "train", **over).parser.get_parsed_content("loss").class_weight \
        is None
    wf = workflow(["train.json", "classify.json"], "train", **over, cls_class_weights="balanced")
    y = np.array([int(np.argmax(r["label"])) for r in wf.parser.get_parsed_content("train#dataset#data")])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(wf.parser.get_parsed_content("loss").class_weight.numpy(), expected, rtol=1e-6)
    assert len(set(np.round(expected, 6))) > 1  # the tiny cohort is imbalanced: the weights differ


@pytest.mark.parametrize("backbone", ["cnn", "vit"])
def test_canonical_dino_ablation_pretrains_both_backbones(trained, tmp_path, backbone):
    """``ablations/dino_caron.json``: 2 global + 6 local crops reach the student; the CNN sees local crops at 3/7 of
    the image size (96 at 224), the ViT (fixed position embedding) sees them resized to the image size."""
    over = {**tiny(trained), "output_dir": str(tmp_path / "run"), "backbone": backbone,
            "dino_presets#caron#output_dim": 64, "dino_presets#caron#hidden_dim": 32}
    wf = workflow(["train.json", "pretrain_dino.json", "ablations/dino_caron.json"], "train", **over)
    crop = wf.parser.get_parsed_content("train#preprocessing").transforms[-1]
    assert crop.cropper.num_local == 6
    assert tuple(crop.cropper.local_size) == ((32, 32) if backbone == "vit" else (14, 14))
    wf.run()
    assert (tmp_path / "run/classification" / f"pretrain_dino_{backbone}" / "model.pt").is_file()


def test_cass_pretraining_and_finetuning_learn(tmp_path):
    """CASS: the CNN-ViT cosine loss falls far from its first epoch; fine-tuning: the focal loss falls."""
    over = tiny(tmp_path, ssl_epochs=6, cass_lr=1e-3, finetune_epochs=6, finetune_lr=1e-3)
    pre = workflow(["train.json", "pretrain_cass.json"], "train", **over)
    losses: list[float] = []
    trainer = pre.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    pre.run()
    assert min(losses[-2:]) < 0.5 * losses[0], losses
    ft = workflow(["train.json", "classify.json"], "train", **over, method="cass", backbone="cnn", row="cass_cnn@100",
                  init_checkpoint=str(tmp_path / "run/classification/pretrain_cass/model.pt"), cls_patience=10)
    epoch_losses: list[list[float]] = [[]]
    trainer = ft.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: epoch_losses[-1].append(e.state.output["loss"]
                                                                                              .item()))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epoch_losses.append([]))
    ft.run()
    means = [float(np.mean(x)) for x in epoch_losses if x]
    assert means[-1] < 0.7 * means[0], means


def test_cross_teaching_learns_beyond_all_foreground(tmp_path):
    """Cross-teaching at 50 % labels on the tiny skin phantom: the U-Net's test IoU beats predicting the whole field
    (IoU = the lesion's area fraction) by a clear margin, and the pseudo-supervision term was active."""
    over = tiny(tmp_path, seg_max_iterations=60, seg_lr=3e-3, seg_eta_min=3e-3, consistency_mode="constant",
                seg_methods=["cross_teaching"], workflows=["segmentation"])
    wf = workflow("train.json", None, **over)
    wf.run()
    report = json.loads((tmp_path / "run/report/metrics.json").read_text())
    iou = {r["net"]: r["iou"] for r in report["segmentation"]}
    masks = segmentation_records(str(tmp_path / "data/skin/datalist.json"), ["test"], "mask")
    area = float(np.mean([(np.asarray(Image.open(tmp_path / "data/skin" / m["label"])) > 0).mean() for m in masks]))
    assert iou["unet"] > area + 0.15 and iou["swin"] > area + 0.05, (iou, area)


def test_evaluate_json_runs_only_the_test_stages_and_the_report(trained):
    wf = workflow(["train.json", "evaluate.json"], None, **tiny(trained), resume=False)
    names = [s["name"] for s in wf.parser.get_parsed_content("evaluation_stages")]
    assert names[-1] == "report" and all(n.startswith("test_") for n in names[:-1])
    assert len(names) == 6 + 3 + 1
    before = (trained / "run/classification/pretrain_cass/model.pt").stat().st_mtime_ns
    records = wf.run()[0]
    assert [r["name"] for r in records] == names and not any(r["skipped"] for r in records)
    assert (trained / "run/classification/pretrain_cass/model.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize("ablation", sorted(p.name for p in (CONFIGS / "ablations").glob("*.json")))
def test_ablations_layer_on_every_training_stage(trained, ablation):
    over = tiny(trained)
    for configs, extra in ((["train.json", "classify.json"], {"method": "supervised"}),
                           (["train.json", "segment.json", "cross_teaching.json"], {"seg_method": "cross_teaching"}),
                           (["train.json", "pretrain_dino.json"], {})):
        wf = workflow([*configs, f"ablations/{ablation}"], "train", **over, **extra)
        assert wf.check_properties() in (None, []), (ablation, configs)
    wf = workflow(["train.json", f"ablations/{ablation}"], None, **over)
    assert wf.parser.get_parsed_content("stages")


def test_the_cohort_does_not_depend_on_the_training_seed(trained):
    """Runs of several training seeds share one phantom cohort (``phantom_seed``), so they may run side by side."""
    datalist = trained / "data/skin/datalist.json"
    before = datalist.stat().st_mtime_ns
    wf = workflow("train.json", None, **tiny(trained), seed=1)
    assert wf.parser.get_parsed_content("datalist") == str(datalist) and datalist.stat().st_mtime_ns == before
