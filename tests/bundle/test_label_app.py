"""What the MONAI Label app serves, checked in the main environment against the bundles' own workflows:
one-radiograph screening vs ``inference.json``, the active-learning score vs the screening inferer's uncertainty,
the working copy of the segmentation bundle, strict weight loading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_osteo.bundle import find_bundle_root
from monai_osteo.bundle.label_app import (
    HandScreener,
    bone_uncertainty,
    load_network_weights,
    prepare_bone_bundle,
    read_bone_bundle,
    recorded_settings,
    run_settings,
)
from monai_osteo.data import LoadRadiograph
from monai_osteo.networks.nets import MultiDecoderOTUNet
from tests.bundles.hand_osteo_tiny import ARCH, SEG_ARCH, tiny_train, workflow


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread) -> Path:
    root = tmp_path_factory.mktemp("label_app")
    wf = workflow("train.json", None, **tiny_train(root))
    wf.run()
    wf.finalize()
    return root


def _image(run: Path, i: int = 0) -> Path:
    return sorted((run / "data" / "images").glob("*.png"))[i]


def test_screener_reports_what_inference_json_writes(run, tmp_path):
    """The run was trained with train.json alone; the screener is told quick.json, whose patch size (128 px), bone
    z-score and stage features differ, and screens as the run was trained all the same: its run.json wins."""
    image = _image(run)
    assert recorded_settings(run / "run") == {"patch_size": 32, "patch_normalization": None, "feature_pooling": "avg"}
    assert recorded_settings(run) == {}  # no run.json: the configs decide
    labels, report = HandScreener(run / "run", ("quick.json",), overrides=ARCH)(image)
    out = tmp_path / "reports"
    wf = workflow(["train.json", "inference.json"], "infer",
                  **{**tiny_train(run), "dataset_dir": str(image), "report_dir": str(out),
                     "models_dir": str(run / "run")})
    wf.run()
    (expected_file,) = [p for p in out.glob("r*.json")]
    expected = json.loads(expected_file.read_text())
    assert report["id"] == expected["id"]
    for key in ("decision", "decision_name", "bones_found", "bones_missing", "qc_flags", "gates"):
        assert report[key] == expected[key], key
    for key in ("probability", "bone_probabilities", "segmentation"):
        got, want = report[key], expected[key]
        if isinstance(want, dict):
            assert set(got) == set(want)
            for k in want:
                assert (got[k] is None) == (want[k] is None) and (want[k] is None or np.isclose(got[k], want[k])), k
        else:
            assert np.isclose(got, want, equal_nan=True)
    assert labels.shape == tuple(LoadRadiograph()(str(image)).shape[1:]) and labels.dtype == np.uint8
    found = {["ulna", "radius", "M1", "M2", "M3", "M4", "M5"][v - 1] for v in np.unique(labels) if v}
    assert found == set(report["bones_found"])


def test_inference_json_screens_with_what_the_run_recorded(run, tmp_path):
    """``inference.json`` layered with quick.json (128 px, bone z-score, stage features) on the train.json run (32 px,
    no normalisation, last-stage features) screens it as it was trained: the run's run.json wins over the preset."""
    image = _image(run)
    reports = {}
    for name, configs in (("as_trained", ["train.json", "inference.json"]),
                          ("quick", ["train.json", "quick.json", "inference.json"])):
        out = tmp_path / name
        over = {**tiny_train(run), "dataset_dir": str(image), "report_dir": str(out), "models_dir": str(run / "run"),
                "gates_enabled": False}
        wf = workflow(configs, "infer", **over)
        assert wf.parser.get_parsed_content("network").fc.in_features == 512  # ResNet-18's last stage, as trained
        assert wf.parser.get_parsed_content("inferer").resize.transforms[-1].spatial_size == (32, 32)
        wf.run()
        (report,) = out.glob("r*.json")
        reports[name] = json.loads(report.read_text())
    got, want = reports["quick"], reports["as_trained"]
    assert got["decision"] == want["decision"] and got["bones_found"] == want["bones_found"]
    assert np.isfinite(want["probability"]) and np.isclose(got["probability"], want["probability"])
    found = [b for b, p in want["bone_probabilities"].items() if p is not None]
    assert found and all(np.isclose(got["bone_probabilities"][b], want["bone_probabilities"][b]) for b in found)
    # control: without the run's record the preset decides, and its stage features would not fit the run's model
    control = workflow(["train.json", "quick.json", "inference.json"], "infer",
                       **{**over, "report_dir": str(tmp_path / "control"), "recorded_settings": {}})
    assert control.parser.get_parsed_content("network").fc.in_features == 960


def test_recorded_settings_of_runs_trained_before_the_options(tmp_path):
    """A run.json written before patch_normalization (0.3.2) and feature_pooling (0.4.0) existed: what those runs
    used."""
    (tmp_path / "run.json").write_text(json.dumps({"probe_spatial_size": 224, "classifier": "model.pt"}))
    assert recorded_settings(tmp_path) == {"patch_size": 224, "patch_normalization": None, "feature_pooling": "avg"}


def test_screener_is_per_image_deterministic_and_names_a_missing_run(run, tmp_path):
    screener = HandScreener(run / "run", ("quick.json",), overrides=ARCH)
    a = screener(_image(run, 1))
    screener(_image(run, 2))
    b = screener(_image(run, 1))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1]["segmentation"] == b[1]["segmentation"]
    with pytest.raises(FileNotFoundError, match="scripts/run.sh demo"):
        HandScreener(tmp_path)
    bad = tmp_path / "Doe_John.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    with pytest.raises(ValueError, match="cannot read the radiograph") as err:
        screener(bad)
    assert "Doe_John" not in str(err.value)


def test_bone_uncertainty_is_the_screening_inferers_mutual_information_in_bones(run):
    screener = HandScreener(run / "run", ("quick.json",), overrides=ARCH)
    net = screener.segmentation
    size = tuple(tiny_train(run)["seg_spatial_size"])
    image = LoadRadiograph()(str(_image(run, 3)))
    _, report = screener(_image(run, 3))
    state = torch.random.get_rng_state()
    score = bone_uncertainty(net, image, size, seed=screener.seed)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random state is untouched
    assert score == pytest.approx(report["segmentation"]["mean_mutual_information_in_bones"], rel=1e-5)
    assert bone_uncertainty(net, image, size, seed=screener.seed) == score
    assert score > 0


def test_one_hypothesis_has_no_epistemic_uncertainty():
    torch.manual_seed(0)
    net = MultiDecoderOTUNet(spatial_dims=2, in_channels=1, out_channels=8, channels=[4, 8], num_decoders=1,
                             num_samples=1, latent_dim=2, head_channels=4)
    image = torch.rand(1, 48, 40)
    assert bone_uncertainty(net, image, (32, 24)) == pytest.approx(0.0, abs=1e-6)


def test_working_copy_of_the_segmentation_bundle(run, tmp_path):
    dest = tmp_path / "copy"
    arch = run_settings(("quick.json",), ARCH)
    assert arch == {k: v for k, v in SEG_ARCH.items()}
    prepare_bone_bundle(dest, run / "run" / "segmentation.pt", arch)
    for name in ("train.json", "inference.json"):
        config = json.loads((dest / "configs" / name).read_text())
        assert {k: config[k] for k in arch} == arch
    meta = json.loads((dest / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == arch["spatial_size"]
    net, size = read_bone_bundle(dest)
    assert size == tuple(arch["spatial_size"])
    expected = torch.load(run / "run" / "segmentation.pt", map_location="cpu")
    expected = expected.get("model", expected)
    assert all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())
    # a fine-tuned model is kept when the app starts again
    fine_tuned = {k: v + 1 if v.is_floating_point() else v for k, v in expected.items()}
    torch.save(fine_tuned, dest / "models" / "model.pt")
    prepare_bone_bundle(dest, run / "run" / "segmentation.pt", arch)
    key = next(iter(fine_tuned))
    assert torch.equal(torch.load(dest / "models" / "model.pt")[key], fine_tuned[key])
    # the copy is a bundle MONAI runs on its own
    wf = workflow("inference.json", "infer", dest / "configs", bundle_root=str(dest), output_dir=str(tmp_path / "o"),
                  dataset_dir=str(_image(run)))
    assert wf.check_properties() == []
    wf.run()
    assert len(list((tmp_path / "o").glob("*_bones.png"))) == 1
    with pytest.raises(ValueError, match="unknown overrides"):
        prepare_bone_bundle(dest, None, {"learning_rate": 1.0})


def test_weights_that_do_not_fit_name_the_file(run):
    net = MultiDecoderOTUNet(spatial_dims=2, in_channels=1, out_channels=8, channels=[4, 8], num_decoders=1,
                             num_samples=1, latent_dim=2, head_channels=4)
    with pytest.raises(RuntimeError, match="segmentation.pt: the weights do not fit"):
        load_network_weights(net, run / "run" / "segmentation.pt")


def test_bundle_root_is_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path(find_bundle_root("hand_bone_segmentation"))
    assert (root / "configs" / "inference.json").is_file() and root.name == "hand_bone_segmentation"
    assert os.path.samefile(root.parents[1], Path(__file__).resolve().parents[2])
