"""The hand_bone_segmentation bundle, model-zoo style: train (resume after a kill), inference with and without
weights, MONAI Label-style records, metadata, network shapes and TorchScript export."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out
from PIL import Image

from tests.bundles.hand_osteo_tiny import SEG_ARCH, SEG_CONFIGS, workflow
from tests.utils import assert_allclose

BUNDLE = SEG_CONFIGS.parent
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"


def _train_over(root: Path, **extra) -> dict:
    return {"bundle_root": str(BUNDLE), "output_dir": str(root / "models"), "phantom_dir": str(root / "data"),
            "phantom_overrides": {"subjects": 0, "unlabeled": 16, "height": 128}, "max_epochs": 2, **SEG_ARCH,
            **extra}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seg")
    wf = workflow("train.json", "train", SEG_CONFIGS, **_train_over(root))
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    return root


def test_train_writes_best_and_last_checkpoints_and_metrics(trained):
    models = trained / "models"
    for name in ("model.pt", "last.pt", "metrics.csv"):
        assert (models / name).is_file(), name
    assert list((models / "tensorboard").iterdir())
    last = torch.load(models / "last.pt", map_location="cpu", weights_only=False)
    assert set(last) == {"model", "optimizer", "trainer", "best_model"}
    assert last["trainer"]["iteration"] == 2 * last["trainer"]["epoch_length"]
    best = torch.load(models / "model.pt", map_location="cpu")
    assert set(best) == set(last["model"])  # the bare network, loadable by MixtureMeanUNet and MONAI Label
    assert not [p for p in models.iterdir() if p.name.startswith(".")]


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    over = _train_over(tmp_path, max_epochs=3)
    wf = workflow("train.json", "train", SEG_CONFIGS, **over)
    trainer = wf.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), lambda e: e.terminate())  # "killed" after epoch 1
    wf.run()
    per_epoch = trainer.state.epoch_length
    assert torch.load(tmp_path / "models" / "last.pt", weights_only=False)["trainer"]["iteration"] == per_epoch
    wf2 = workflow("train.json", "train", SEG_CONFIGS, **over)
    trainer2 = wf2.parser.get_parsed_content("train#trainer")
    ran = []
    trainer2.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran.append(e.state.iteration))
    wf2.run()
    assert ran[0] == per_epoch + 1 and ran[-1] == 3 * per_epoch and len(ran) == 2 * per_epoch
    # resume=False starts from scratch
    wf3 = workflow("train.json", "train", SEG_CONFIGS, **{**over, "resume": False, "max_epochs": 1})
    trainer3 = wf3.parser.get_parsed_content("train#trainer")
    wf3.run()
    assert trainer3.state.iteration == per_epoch


def test_monai_label_style_records_train(trained, tmp_path):
    """``train#dataset#data`` given as [{"image", "label"}] with one label map per image (MONAI Label's datastore)."""
    data = json.loads((trained / "data" / "datalist.json").read_text())
    root = trained / "data"
    records = [{"image": str(root / d["image"]), "label": str(root / d["mask_truth"])}
               for d in data["unlabeled"] if d["split"] == "training"][:4]
    val = [{"image": str(root / d["image"]), "label": str(root / d["mask_truth"])}
           for d in data["unlabeled"] if d["split"] == "validation"][:2]
    over = _train_over(tmp_path, max_epochs=1, **{"train#dataset#data": records, "validate#dataset#data": val,
                                                  "datalist": None})
    wf = workflow("train.json", "train", SEG_CONFIGS, **over)
    assert wf.check_properties() == []
    wf.run()
    assert (tmp_path / "models" / "model.pt").is_file()


def _inputs(trained: Path, folder: Path) -> list[Path]:
    folder.mkdir()
    for p in sorted((trained / "data" / "images").glob("*.png"))[:2]:
        shutil.copy(p, folder / f"Doe_John_{p.name}")
    return sorted(folder.iterdir())


def test_inference_checks_without_weights_or_data(tmp_path):
    wf = workflow("inference.json", "infer", SEG_CONFIGS, bundle_root=str(BUNDLE),
                  dataset_dir=str(tmp_path / "nothing"), models_dir=str(tmp_path / "no_models"))
    assert wf.check_properties() == []


@pytest.mark.parametrize("weights", [True, False])
def test_inference_label_maps_on_the_radiograph_grid(trained, tmp_path, weights):
    files = _inputs(trained, tmp_path / "in")
    over = {"bundle_root": str(BUNDLE), "dataset_dir": str(tmp_path / "in"), "models_dir": str(trained / "models"),
            "output_dir": str(tmp_path / "out"), **SEG_ARCH}
    if not weights:  # the model zoo's "inference with the checkpoint handler disabled"
        over["handlers#0#_disabled_"] = True
    wf = workflow("inference.json", "infer", SEG_CONFIGS, **over)
    assert wf.check_properties() == []
    wf.run()
    outs = sorted((tmp_path / "out").glob("*.png"))
    assert len(outs) == len(files)
    assert not any("Doe" in p.name for p in outs)
    shapes = {np.asarray(Image.open(f)).shape for f in files}
    for p in outs:
        lab = np.asarray(Image.open(p))
        assert lab.shape in shapes and lab.dtype == np.uint8 and lab.max() <= 7


def test_inference_matches_the_network_on_the_letterboxed_image(trained, tmp_path):
    """The saved label map is the argmax of the mixture mean, resized back from the letterboxed grid."""
    files = _inputs(trained, tmp_path / "in")
    over = {"bundle_root": str(BUNDLE), "dataset_dir": str(tmp_path / "in"), "models_dir": str(trained / "models"),
            "output_dir": str(tmp_path / "out"), "record_source": True, **SEG_ARCH}
    wf = workflow("inference.json", "infer", SEG_CONFIGS, **over)
    wf.run()
    net = wf.parser.get_parsed_content("network").eval()
    from monai_osteo.data import LoadRadiograph
    from monai_osteo.transforms import Letterbox

    img = LoadRadiograph()(files[0])
    prob = net(Letterbox(SEG_ARCH["spatial_size"])(img)[None].float())[0]
    up = torch.nn.functional.interpolate(prob[None], size=img.shape[1:], mode="area")[0].argmax(0).numpy()
    saved = np.asarray(Image.open(next((tmp_path / "out").glob(f"{files[0].stem}*.png"))))
    assert (saved == up).mean() > 0.97  # resampling at label boundaries may differ by a pixel


def test_verify_metadata_and_net_in_out(monkeypatch):
    verify_metadata(meta_file=str(SEG_CONFIGS / "metadata.json"), filepath=str(BUNDLE / "docs" / "meta_schema.json"),
                    hash_val=SCHEMA_MD5, hash_type="md5")
    meta = json.loads((SEG_CONFIGS / "metadata.json").read_text())
    assert "monai_osteo" in meta["required_packages_version"]
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        "0": "background", "1": "ulna", "2": "radius", "3": "M1", "4": "M2", "5": "M3", "6": "M4", "7": "M5"}
    assert hashlib.md5((BUNDLE / "docs" / "meta_schema.json").read_bytes()).hexdigest() == SCHEMA_MD5
    verify_net_in_out(net_id="network_def", meta_file=str(SEG_CONFIGS / "metadata.json"),
                      config_file=str(SEG_CONFIGS / "inference.json"), device="cpu", bundle_root=str(BUNDLE))


def test_ckpt_export_equals_eager(trained, tmp_path):
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"),
                ckpt_file=str(trained / "models" / "model.pt"), meta_file=str(SEG_CONFIGS / "metadata.json"),
                config_file=str(SEG_CONFIGS / "inference.json"), bundle_root=str(BUNDLE), **SEG_ARCH)
    wf = workflow("inference.json", "infer", SEG_CONFIGS, bundle_root=str(BUNDLE), **SEG_ARCH)
    net = wf.parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(trained / "models" / "model.pt", map_location="cpu"))
    x = torch.rand(2, 1, *SEG_ARCH["spatial_size"])
    assert_allclose(torch.jit.load(str(tmp_path / "model.ts"))(x), net.eval()(x), atol=1e-5, rtol=1e-4)
