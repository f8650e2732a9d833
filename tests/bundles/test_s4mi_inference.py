"""s4mi inference_classification.json / inference_segmentation.json, layered on train.json: the training
preprocessing -> SimpleInferer -> sigmoid (+ argmax) | softmax, inverse resize, argmax -> CheckpointLoader + writer.
Predictions equal the trained network's in-process output, masks come back at each input's size, bad files are
reported and skipped, outputs name neither the patient nor the file unless asked, and both configs pass
check_properties() with no weights and no data."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.transforms import Compose
from PIL import Image

from monai_osteo.bundle.s4mi import S4MI_COHORTS, load_classifier, load_segmentation_network
from tests.bundles.s4mi_tiny import ARCH, BUNDLE, tiny, workflow
from tests.utils import assert_allclose

CLS = ["train.json", "inference_classification.json"]
SEG = ["train.json", "inference_segmentation.json"]
#: good inputs: file name -> (height, width, PIL mode)
GOOD = {
    "Doe_John_rgb.png": (90, 120, "RGB"),
    "Hoe_Bob_rgba.png": (128, 128, "RGBA"),
    "Poe_Ann_gray16.png": (80, 70, "I;16"),
    "Roe_Jane_gray.png": (100, 76, "L"),
}
BAD = ("corrupt_Moe.png", "letter_Zoe.jpg")
SECRETS = ("Doe", "Roe", "Poe", "Hoe", "Moe", "Zoe", "John", "Jane")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """The tiny bundle trained once (skin; supervised CNN + ViT, cross-teaching and supervised U-Net rows) and an
    input folder of phantom images in four layouts, a truncated PNG, a text file named .jpg and a .txt file."""
    root = tmp_path_factory.mktemp("s4mi_infer")
    workflow("train.json", None, **tiny(root, "skin", cls_methods=["supervised"])).run()
    datalist = json.loads((root / "data" / "skin" / "datalist.json").read_text())
    sources = [root / "data" / "skin" / d["image"] for d in datalist["test"][: len(GOOD)]]
    folder = root / "in"
    folder.mkdir()
    for (name, (h, w, mode)), src in zip(GOOD.items(), sources):
        im = Image.open(src).convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
        if mode == "I;16":
            Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257).save(folder / name)
        else:
            im.convert(mode).save(folder / name)
    png = (folder / "Doe_John_rgb.png").read_bytes()
    (folder / BAD[0]).write_bytes(png[: len(png) // 2])
    (folder / BAD[1]).write_text("Dear Dr. Zoe, please find the scans attached.")
    (folder / "notes.txt").write_text("not an input: wrong suffix")
    return {"root": root, "in": folder}


def _over(data: dict, **override) -> dict:
    return {"bundle_root": str(BUNDLE), "output_dir": str(data["root"] / "run"), "cohort": "skin",
            "num_workers": 0, "device": "$torch.device('cpu')", "batch_size": 3, **ARCH, **override}


def _run(configs, data: dict, out: Path, summary: str, **override) -> dict:
    wf = workflow(configs, "infer", **_over(data, input_dir=str(data["in"]), predictions_dir=str(out), **override))
    assert wf.check_properties() == []
    wf.run()
    return json.loads((out / summary).read_text())


def _train_parser(data: dict, **override):
    """train.json's parser with the same architecture: its preprocessing and network definitions are the oracle's."""
    return workflow("train.json", None, **_over(data, **override)).parser


def _good_files(data: dict) -> list[Path]:
    return [p for p in sorted(data["in"].iterdir()) if p.name in GOOD]


def _assert_bad_reported(summary: dict, text: str) -> None:
    assert summary["failed_count"] == len(BAD) and all(set(f) == {"id", "error"} for f in summary["failed"])
    errors = [f["error"] for f in summary["failed"]]  # the truncated PNG, then the text file named .jpg
    assert errors[0] and errors[1].startswith("UnidentifiedImageError: cannot identify image file '<input>'"), errors
    assert not any(s in text for s in SECRETS)


@pytest.mark.parametrize("configs", [CLS, SEG])
def test_check_properties_with_no_weights_and_no_data(configs, tmp_path):
    wf = workflow(configs, "infer", **_over({"root": tmp_path}, input_dir=str(tmp_path / "no_inputs"),
                                            predictions_dir=str(tmp_path / "out")))
    assert wf.check_properties() == []
    assert not any(type(h).__name__ == "CheckpointLoader" for h in wf.parser.get_parsed_content("handlers"))
    assert wf.parser.get_parsed_content("inputs") == {"items": [], "failed": []}
    with pytest.raises(RuntimeError, match="require_file") as e:  # MONAI wraps the error of a config expression
        wf.run()
    assert re.search(r"model_file '.*model.pt' does not exist: train the bundle .*--row ROW", str(e.value.__cause__))
    assert not (tmp_path / "out").exists()


def test_classification_equals_the_network_and_reports_bad_files(data, tmp_path, caplog):
    out = tmp_path / "cls"
    with caplog.at_level(logging.INFO):
        summary = _run(CLS, data, out, "predictions.json", row="supervised_cnn@50")
    text = (out / "predictions.json").read_text()
    _assert_bad_reported(summary, text + caplog.text)
    names = S4MI_COHORTS["skin"]["class_names"]
    assert summary["class_names"] == names and summary["count"] == len(GOOD) == len(summary["images"])
    # oracle: train.json's preprocessing and the fine-tuned classifier, one image at a time
    parser = _train_parser(data, backbone="cnn")
    prep = Compose(parser.get_parsed_content("load_transforms") + parser.get_parsed_content("final_transforms"))
    net = load_classifier(parser.get_parsed_content("classifier_def"),
                          data["root"] / "run" / "classification" / "supervised_cnn@50" / "model.pt")
    for rec, src in zip(summary["images"], _good_files(data)):
        assert set(rec) == {"id", "probabilities", "labels", "class"} and rec["id"].startswith("r0")
        with torch.no_grad():
            expected = torch.sigmoid(net(prep({"image": str(src)})["image"][None]))[0]
        p = torch.tensor([rec["probabilities"][c] for c in names])
        assert_allclose(p, expected, atol=1e-5, msg=src.name)
        assert ((p >= 0) & (p <= 1)).all()
        assert rec["labels"] == [c for c, v in zip(names, p) if v > 0.5] and rec["class"] == names[int(p.argmax())]
    assert sorted(p.name for p in out.iterdir()) == ["predictions.json"]  # atomic: no temporaries left


def test_classification_vit_row_and_keep_names(data, tmp_path):
    out = tmp_path / "cls"
    summary = _run(CLS, data, out, "predictions.json", row="supervised_vit@50", keep_names=True)
    assert [r["id"] for r in summary["images"]] == [p.stem for p in _good_files(data)]
    assert {Path(r["input"]).name for r in summary["images"]} == set(GOOD)
    assert {Path(f["input"]).name for f in summary["failed"]} == set(BAD)


def test_classification_multilabel_cohort_has_no_argmax_class(data, tmp_path):
    """Fluorescence (5 classes, multi-label): no argmax postprocessing, no ``class`` entry (random weights)."""
    torch.manual_seed(0)
    net = _train_parser(data, cohort="fluorescence").get_parsed_content("classifier_def")
    torch.save(net.state_dict(), tmp_path / "model.pt")
    summary = _run(CLS, data, tmp_path / "out", "predictions.json", cohort="fluorescence",
                   model_file=str(tmp_path / "model.pt"), input_files=[str(p) for p in _good_files(data)])
    assert summary["multilabel"] and summary["class_names"] == S4MI_COHORTS["fluorescence"]["class_names"]
    assert summary["count"] == len(GOOD) and summary["failed"] == []
    assert all(set(r) == {"id", "probabilities", "labels"} for r in summary["images"])


def test_bad_row_names_the_fix(data, tmp_path):
    wf = workflow(CLS, "infer", **_over(data, row="cass_resnet@100", predictions_dir=str(tmp_path)))
    with pytest.raises(RuntimeError) as e:
        wf.parser.get_parsed_content("network_def")
    assert re.search(r"row must name a classification row .*--backbone", str(e.value.__cause__))


def _expected_mask(model_file: Path, seg_method: str, eval_net: str, prep, src: Path, size) -> np.ndarray:
    """The oracle: the row's network on train.json's preprocessing, softmax brought back by area resizing, argmax."""
    net = load_segmentation_network(model_file, seg_method, eval_net, 3, ARCH["seg_image_size"],
                                    ARCH["unet_features"], 0.1, ARCH["swin_feature_size"])
    with torch.no_grad():
        p = torch.softmax(net(prep({"image": str(src)})["image"][None]), dim=1)
    return (F.interpolate(p, size=size, mode="area").argmax(1) == 1)[0].numpy()


@pytest.mark.parametrize(("row", "eval_net"), [("supervised_unet@50", None), ("cross_teaching@50", "swin")])
def test_segmentation_masks_at_input_size_equal_the_network(data, tmp_path, caplog, row, eval_net):
    out = tmp_path / "seg"
    extra = {"eval_net": eval_net} if eval_net else {}
    with caplog.at_level(logging.INFO):
        summary = _run(SEG, data, out, "summary.json", row=row, **extra)
    _assert_bad_reported(summary, (out / "summary.json").read_text() + caplog.text)
    assert summary["count"] == len(GOOD)
    parser = _train_parser(data)
    prep = Compose(parser.get_parsed_content("seg_load_transforms") + parser.get_parsed_content("final_transforms"))
    method = row.split("@")[0]
    model_file = data["root"] / "run" / "segmentation" / row / "model.pt"
    for rec, src in zip(summary["images"], _good_files(data)):
        h, w, _ = GOOD[src.name]
        mask = np.asarray(Image.open(out / rec["mask"]))
        assert mask.shape == (h, w) and rec["size"] == [h, w] and set(np.unique(mask)) <= {0, 255}
        expected = _expected_mask(model_file, method, eval_net or "unet", prep, src, (h, w))
        assert (expected == (mask == 255)).mean() > 0.99, src.name
        assert 0 < rec["foreground_fraction"] < 1 and abs(rec["foreground_fraction"] - (mask == 255).mean()) < 1e-6
        assert np.asarray(Image.open(out / rec["overlay"])).shape == (h, w, 3)
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 * len(GOOD) + 1 and not any(n.startswith(".") or n.endswith(".tmp") for n in names)
    assert not any(s in n for n in names for s in SECRETS)


def test_segmentation_eval_net_must_fit_the_row(data, tmp_path):
    wf = workflow(SEG, "infer", **_over(data, row="supervised_unet@50", eval_net="swin", predictions_dir=str(tmp_path)))
    with pytest.raises(RuntimeError) as e:
        wf.parser.get_parsed_content("network")
    assert re.search(r"trains one unet network, got eval_net 'swin': pass --eval_net unet", str(e.value.__cause__))


def test_class_probability_writer_alone(tmp_path):
    from ignite.engine import Engine

    from monai_osteo.handlers.class_probability_writer import ClassProbabilityWriter

    writer = ClassProbabilityWriter(tmp_path / "out", ["a", "b", "c"], failed=[{"id": "r9", "error": "bad"}],
                                    threshold=0.3)
    engine = Engine(lambda e, batch: [{"pred": torch.tensor([0.2, 0.7, 0.4])}])  # no pred_class: argmax here
    writer.attach(engine)
    engine.run([[{"name": "r0", "source": "/secret/Doe.png"}]], max_epochs=1)
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert summary["images"] == [{"id": "r0", "probabilities": {"a": pytest.approx(0.2), "b": pytest.approx(0.7),
                                                                 "c": pytest.approx(0.4)},
                                  "labels": ["b", "c"], "class": "b"}]
    assert summary["failed"] == [{"id": "r9", "error": "bad"}] and summary["count"] == 1
    with pytest.raises(ValueError, match="pred must hold 3 class probabilities"):
        writer.add("r1", torch.zeros(2))
    with pytest.raises(ValueError, match="threshold must be in"):
        ClassProbabilityWriter(tmp_path, ["a"], threshold=2.0)
