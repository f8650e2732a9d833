"""MedSASS inference.json: preprocessing of train.json -> SimpleInferer -> sigmoid, inverse resize, threshold ->
CheckpointLoader + SegmentationMaskWriter. Masks come back at each input's size, bad files are reported and skipped,
outputs name neither the patient nor the file unless asked, writes are atomic, and the config passes
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
from monai.bundle import ConfigWorkflow
from PIL import Image

from monai_osteo.bundle.images import check_images, list_images
from monai_osteo.handlers.mask_writer import SegmentationMaskWriter
from monai_osteo.networks.nets import ResNetUNet

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "medsass"
CONFIGS = BUNDLE / "configs"
ARCH = {"backbone": "resnet18", "decoder_channels": [16, 8, 4], "image_size": [32, 32]}
#: good inputs: file name -> (height, width); RGB, 8-bit gray, 16-bit gray, RGBA
GOOD = {
    "Doe_John_rgb.png": (40, 56),
    "Roe_Jane_gray.png": (33, 29),
    "Poe_Ann_gray16.png": (30, 44),
    "Hoe_Bob_rgba.png": (48, 36),
}
BAD = {"corrupt_Moe.png": b"this is not an image" * 4, "empty_Zoe.png": b""}
SECRETS = ("Doe", "Roe", "Poe", "Hoe", "Moe", "Zoe", "John", "Jane")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("medsass_infer")
    folder = root / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in GOOD.items():
        y, x = np.mgrid[:h, :w]
        blob = ((y - h / 2) ** 2 + (x - w / 3) ** 2 < (min(h, w) / 3) ** 2).astype(np.float64)
        base = 0.2 + 0.6 * blob + 0.1 * rng.random((h, w))
        if "gray16" in name:
            Image.fromarray((base * 65535).astype(np.uint16)).save(folder / name)
        elif "gray" in name:
            Image.fromarray((base * 255).astype(np.uint8)).save(folder / name)
        else:
            c = 4 if "rgba" in name else 3
            Image.fromarray((np.stack([base] * c, -1) * 255).astype(np.uint8)).save(folder / name)
    for name, content in BAD.items():
        (folder / name).write_bytes(content)
    (folder / "notes.txt").write_text("not an input: wrong suffix")
    torch.manual_seed(0)
    net = ResNetUNet(2, 3, 1, **{k: v for k, v in ARCH.items() if k != "image_size"}).eval()
    with torch.no_grad():  # centre the head on the first image's median logit: masks neither empty nor full
        net.head.bias -= net(_network_input(folder / next(iter(GOOD)))).median()
    torch.save(net.state_dict(), root / "model.pt")
    return root


def _network_input(path: Path) -> torch.Tensor:
    """(1, 3, 32, 32): train.json's preprocessing written out (RGB, scaled to [0, 1] by bit depth, area-resized)."""
    a = np.asarray(Image.open(path)).astype(np.float32)
    a = a[..., :3] if a.ndim == 3 else np.stack([a] * 3, -1)
    x = torch.from_numpy(a).permute(2, 0, 1)[None]
    scale = 65535.0 if a.max() > 255 else 255.0  # the bit depth: 16-bit PNGs /65535, 8-bit /255
    return F.interpolate(x / scale, size=ARCH["image_size"], mode="area")


def _workflow(**override) -> ConfigWorkflow:
    over = {
        "bundle_root": str(BUNDLE),
        "num_workers": 0,
        "batch_size": 3,
        "device": "$torch.device('cpu')",
        **ARCH,
        **override,
    }
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "inference.json")],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type="infer",
        **over,
    )
    wf.initialize()
    return wf


def _run(data: Path, out: Path, **override) -> dict:
    wf = _workflow(input_dir=str(data / "in"), predictions_dir=str(out), model_file=str(data / "model.pt"), **override)
    assert wf.check_properties() == []
    wf.run()
    return json.loads((out / "summary.json").read_text())


def _expected_mask(data: Path, name: str) -> np.ndarray:
    """The oracle: the network's sigmoid on the 32x32 input brought back by area resizing, > 0.5."""
    net = ResNetUNet(2, 3, 1, **{k: v for k, v in ARCH.items() if k != "image_size"})
    net.load_state_dict(torch.load(data / "model.pt"))
    with torch.no_grad():
        p = torch.sigmoid(net.eval()(_network_input(data / "in" / name)))
    return (F.interpolate(p, size=GOOD[name], mode="area") > 0.5)[0, 0].numpy()


def test_check_properties_with_no_weights_and_no_data(tmp_path):
    wf = _workflow(
        predictions_dir=str(tmp_path / "out"),
        output_dir=str(tmp_path / "no_models"),
        input_dir=str(tmp_path / "no_inputs"),
    )
    assert wf.check_properties() == []
    handlers = wf.parser.get_parsed_content("handlers")
    assert not any(type(h).__name__ == "CheckpointLoader" for h in handlers)  # disabled: no model file
    assert wf.parser.get_parsed_content("inputs") == {"items": [], "failed": []}
    assert not (tmp_path / "out").exists()


def test_missing_model_file_names_it_and_the_fix(data, tmp_path):
    missing = tmp_path / "nowhere" / "model.pt"
    wf = _workflow(input_dir=str(data / "in"), predictions_dir=str(tmp_path / "out"), model_file=str(missing))
    assert wf.check_properties() == []
    with pytest.raises(RuntimeError, match="require_file") as e:  # MONAI wraps the error of a config expression
        wf.run()
    assert isinstance(e.value.__cause__, FileNotFoundError)
    assert re.search(
        rf"model_file '{missing}' does not exist: train the bundle .*--model_file PATH", str(e.value.__cause__)
    )
    assert not (tmp_path / "out").exists()


def test_no_inputs_says_what_to_pass(data, tmp_path):
    wf = _workflow(
        input_dir=str(tmp_path / "absent"), predictions_dir=str(tmp_path / "out"), model_file=str(data / "model.pt")
    )
    with pytest.raises(RuntimeError, match="require_inputs") as e:
        wf.run()
    assert isinstance(e.value.__cause__, FileNotFoundError)
    assert re.search(r"input_dir .*absent' does not exist.*--input_dir DIR", str(e.value.__cause__))


def test_masks_at_input_size_bad_files_reported_and_names_redacted(data, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        summary = _run(data, out, write_nifti=True)
    assert summary["count"] == len(GOOD) and summary["failed_count"] == 2
    reasons = sorted(f["error"] for f in summary["failed"])
    assert reasons[0].startswith("UnidentifiedImageError: cannot identify image file '<input>'")
    assert reasons[1].startswith("empty file (0 bytes)")
    assert all(set(f) == {"id", "error"} for f in summary["failed"])
    # outputs in input order (list_images sorts the folder), each at its input's size, 0/255
    files = [f for f in sorted((data / "in").iterdir()) if f.name in GOOD]
    assert [r["id"][:6] for r in summary["images"]] == sorted(r["id"][:6] for r in summary["images"])
    for rec, src in zip(summary["images"], files):
        h, w = GOOD[src.name]
        assert rec["size"] == [h, w] and set(rec) == {
            "id",
            "size",
            "foreground_fraction",
            "mask",
            "overlay",
            "mask_nifti",
        }
        mask = np.asarray(Image.open(out / rec["mask"]))
        assert mask.shape == (h, w) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert abs(rec["foreground_fraction"] - (mask == 255).mean()) < 1e-6 and 0 < rec["foreground_fraction"] < 1
        expected = _expected_mask(data, src.name)
        assert (expected == (mask == 255)).mean() > 0.99, src.name  # same maths as the oracle, up to rounding
        overlay = np.asarray(Image.open(out / rec["overlay"]))
        assert overlay.shape == (h, w, 3) and overlay.dtype == np.uint8
        import nibabel as nib

        assert np.array_equal(np.asarray(nib.load(out / rec["mask_nifti"]).dataobj).T, mask // 255)
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3 * len(GOOD) + 1 and "summary.json" in names
    assert not any(n.startswith(".") or n.endswith((".tmp", ".part")) for n in names)  # atomic: no temporaries
    stems = [Path(n).stem for n in (*GOOD, *BAD)]
    assert not any(s in n for n in names for s in stems)
    text = json.dumps(summary)
    assert not any(s in text for s in SECRETS) and str(data) not in text
    assert not any(s in caplog.text for s in SECRETS)  # nor in the log


def test_keep_names_names_outputs_after_the_inputs(data, tmp_path):
    out = tmp_path / "out"
    summary = _run(data, out, keep_names=True, write_overlay=False)
    assert {r["id"] for r in summary["images"]} == {Path(n).stem for n in GOOD}
    assert {Path(r["input"]).name for r in summary["images"]} == set(GOOD)
    assert {Path(f["input"]).name for f in summary["failed"]} == set(BAD)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{Path(n).stem}_mask.png" for n in GOOD] + ["summary.json"]
    )


def test_input_files_all_unreadable_still_writes_the_summary(data, tmp_path):
    out = tmp_path / "out"
    files = [str(data / "in" / n) for n in BAD]
    wf = _workflow(input_files=files, predictions_dir=str(out), model_file=str(data / "model.pt"))
    wf.run()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 0 and summary["images"] == [] and len(summary["failed"]) == 2


def test_list_and_check_images(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "sub" / "a.PNG")
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / ".hidden.png")
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "notes.txt").write_text("x")
    files = list_images(tmp_path)
    assert [Path(f).relative_to(tmp_path).as_posix() for f in files] == ["a.jpg", "sub/a.PNG"]
    assert list_images(tmp_path / "missing", missing_ok=True) == []
    with pytest.raises(FileNotFoundError, match="--input_dir DIR"):
        list_images(tmp_path / "missing")
    # a one-letter stem is redacted where it stands alone, not inside words of the message
    checked = check_images(files)
    assert [i["index"] for i in checked["items"]] == [1] and checked["failed"][0]["id"].startswith("r00000_")
    assert "<input>" in checked["failed"][0]["error"] and "identify" in checked["failed"][0]["error"]
    # keep_names: repeated stems get their index
    assert [i["name"] for i in check_images([files[1], files[1]], keep_names=True)["items"]] == ["a_00000", "a_00001"]


def test_mask_writer_alone(tmp_path):
    from ignite.engine import Engine

    Image.fromarray(np.full((6, 8, 3), 100, np.uint8)).save(tmp_path / "img.png")
    pred = torch.zeros(1, 6, 8)
    pred[:, 1:5, 2:7] = 1
    writer = SegmentationMaskWriter(
        tmp_path / "out", failed=[{"id": "r9", "error": "bad"}], color=(0, 255, 0), alpha=0.5
    )
    engine = Engine(lambda e, batch: [{"pred": pred}])
    writer.attach(engine)
    engine.run([[{"name": "r0", "source": str(tmp_path / "img.png")}]], max_epochs=1)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"][0]["foreground_fraction"] == pytest.approx(20 / 48)
    assert summary["failed"] == [{"id": "r9", "error": "bad"}] and "input" not in summary["images"][0]
    overlay = np.asarray(Image.open(tmp_path / "out" / "r0_overlay.png")).astype(int)
    assert (overlay[0, 0] == [100, 100, 100]).all()  # background untouched
    assert (overlay[1, 2] == [0, 255, 0]).all()  # contour
    assert (overlay[2, 3] == [50, 178, 50]).all()  # interior: 50% tint
    with pytest.raises(ValueError, match="pred must be a"):
        writer.write("r1", torch.zeros(2, 6, 8))
    with pytest.raises(ValueError, match="alpha must be in"):
        SegmentationMaskWriter(tmp_path, alpha=2.0)
