"""vertebra_osteo inference.json: LoadCTd -> spine views -> ExtractVertebraROId (one dict per vertebra) -> fixed CT
window -> VertebraNet (device-conditioned) -> CheckpointLoader + VertebraReportWriter. One JSON + PNG per CT; bad
cases (unreadable CT, label map off the grid, no usable vertebra, unknown device) reported and skipped; outputs name
neither the patient nor the file unless asked; the config passes check_properties() with no weights and no data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from monai_osteo.bundle.vertebra_inference import vertebra_inputs
from monai_osteo.bundle.vertebra_osteo import DEVICE_REFERENCES, LEVEL_SCALE
from monai_osteo.data.phantoms.vertebra import generate_vertebra_cohort
from monai_osteo.handlers import predicted_t_score
from tests.bundles.vertebra_osteo_tiny import BUNDLE, workflow
from tests.utils import assert_allclose

ARCH = {"roi_size": [32, 32, 32], "roi_spacing": 1.5, "widen_factor": 0.125}
CONFIGS = ["train.json", "inference.json"]
BMD = {"bmd_mean": 0.85, "bmd_std": 0.15, "subtrahend": [-200.0, 0, 0, 0, 0], "divisor": [1500.0, 1, 1, 1, 1]}
SECRET = "Doe_John"


def _workflow(root: Path, **override):
    over = {"bundle_root": str(BUNDLE), "output_dir": str(root / "run"), "num_workers": 0,
            "device": "$torch.device('cpu')", **ARCH, **override}
    return workflow(CONFIGS, "infer", **over)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("vertebra_infer")
    listing = generate_vertebra_cohort(root / "cohort", preset="tiny", patients={"A": (0, 0, 1), "B": (0, 0, 1)},
                                       protocols={"abdomen": 1.0}, workers=1, progress=False)
    patients = json.loads(Path(listing).read_text())["patients"]
    cases = [{"image": str(root / "cohort" / p["image"]), "vertebrae": str(root / "cohort" / p["vertebrae"]),
              "dxa_device": p["dxa_device"]} for p in patients]
    bad = root / "bad"
    bad.mkdir()
    (bad / f"{SECRET}.nii.gz").write_text("not a CT")
    ct = nib.load(cases[0]["image"])
    empty, small = bad / f"{SECRET}_empty_labels.nii.gz", bad / f"{SECRET}_small_labels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(ct.shape, np.uint8), ct.affine), empty)
    nib.save(nib.Nifti1Image(np.zeros([s - 2 for s in ct.shape], np.uint8), ct.affine), small)
    bad_cases = [{"image": str(bad / f"{SECRET}.nii.gz"), "vertebrae": cases[0]["vertebrae"]},
                 {"image": cases[0]["image"], "vertebrae": str(empty)},
                 {"image": cases[1]["image"], "vertebrae": str(small)}]
    torch.manual_seed(0)
    net = _workflow(root).parser.get_parsed_content("network_def")
    torch.save(net.state_dict(), root / "model.pt")
    (root / "normalisation.json").write_text(json.dumps(BMD))  # beside the model, as the fine-tuning stage writes it
    return {"root": root, "patients": patients, "cases": cases, "bad": bad_cases, "model": root / "model.pt"}


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("vertebra_infer_out")
    cases = [data["cases"][0], *data["bad"], data["cases"][1]]
    wf = _workflow(data["root"], input_datalist=cases, model_file=str(data["model"]), predictions_dir=str(out))
    assert wf.check_properties() == []
    assert wf.parser.get_parsed_content("normalisation_file") == str(data["root"] / "normalisation.json")
    wf.run()
    return {"out": out, "summary": json.loads((out / "summary.json").read_text()), "cases": cases}


def test_check_properties_with_no_weights_and_no_data(tmp_path):
    wf = _workflow(tmp_path, output_dir=str(tmp_path / "no_models"), predictions_dir=str(tmp_path / "out"))
    assert wf.check_properties() == []
    handlers = wf.parser.get_parsed_content("handlers")
    assert not any(type(h).__name__ == "CheckpointLoader" for h in handlers)  # disabled: no model file
    assert wf.parser.get_parsed_content("inputs") == {"items": [], "failed": []}
    assert wf.parser.get_parsed_content("bmd_mean") is None  # no cache: no BMD in g/cm²
    assert not (tmp_path / "out").exists() and not (tmp_path / "no_models").exists()


def test_missing_model_file_names_it_and_the_fix(data, tmp_path):
    missing = tmp_path / "nowhere" / "model.pt"
    wf = _workflow(data["root"], input_datalist=data["cases"], model_file=str(missing),
                   predictions_dir=str(tmp_path / "out"))
    with pytest.raises(RuntimeError, match="require_file") as e:  # MONAI wraps the error of a config expression
        wf.run()
    assert isinstance(e.value.__cause__, FileNotFoundError)
    assert re.search(rf"model_file '{missing}' does not exist: run train.json first .*--model_file PATH",
                     str(e.value.__cause__))
    assert not (tmp_path / "out").exists()


def test_no_input_says_what_to_pass(data, tmp_path):
    wf = _workflow(data["root"], model_file=str(data["model"]), predictions_dir=str(tmp_path / "out"))
    with pytest.raises(RuntimeError, match="require_cases") as e:
        wf.run()
    assert re.search(r"no input CT: pass --input_datalist FILE .* or --ct_file CT --label_file", str(e.value.__cause__))


def test_only_rejected_inputs_still_write_the_summary(data, tmp_path):
    out = tmp_path / "out"
    wf = _workflow(data["root"], input_datalist=[{**data["cases"][0], "dxa_device": "Norland"}],
                   model_file=str(data["model"]), predictions_dir=str(out))
    wf.run()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 0 and summary["failed_count"] == 1 and "Norland" in summary["failed"][0]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


def test_reports_per_ct_bad_cases_skipped_and_names_redacted(data, run):
    out, summary = run["out"], run["summary"]
    assert summary["count"] == 2 and summary["failed_count"] == 3
    ids = [r["id"] for r in summary["reports"]]
    assert [i[:6] for i in ids] == ["r00000", "r00004"]  # the case's position in the input list
    errors = {f["id"][:6]: f["error"] for f in summary["failed"]}
    assert errors["r00001"].startswith("CTReadError: Cannot load CT volume '<input>'")
    assert errors["r00002"].startswith("no usable vertebra")
    assert errors["r00003"].startswith("CTReadError") and "grid" in errors["r00003"]
    assert all(set(f) == {"id", "error"} for f in summary["failed"])
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{i}.json" for i in ids] + [f"{i}.png" for i in ids] + ["summary.json"])
    text = " ".join([*names, *((out / n).read_text() for n in names if n.endswith(".json"))])
    assert SECRET not in text and str(data["root"]) not in text and "cohort" not in text
    assert not any(p["patient_id"] in text for p in data["patients"])
    for rid in ids:
        png = Image.open(out / f"{rid}.png")
        assert png.format == "PNG" and png.size[0] > 600 and png.size[1] > 300


def test_report_fields_are_consistent(data, run):
    out = run["out"]
    for k, rid in enumerate(r["id"] for r in run["summary"]["reports"]):
        report = json.loads((out / f"{rid}.json").read_text())
        patient = data["patients"][k]
        levels = [v["level"] for v in report["vertebrae"]]
        skipped = [s.split(":")[0] for s in report["skipped_vertebrae"]]
        assert sorted(levels + skipped, key=patient["levels"].index) == patient["levels"]
        assert levels == [lv for lv in patient["levels"] if lv in levels]  # cranial to caudal
        probs = [v["probability"] for v in report["vertebrae"]]
        assert all(0.0 <= p <= 1.0 for p in probs)
        # the decision uses the levels the model was trained and tested on (DXA levels L1-L4) only
        assessed = [v for v in report["vertebrae"] if v["level"] in ("L1", "L2", "L3", "L4")]
        assert [v["assessed"] for v in report["vertebrae"]] == [v in assessed for v in report["vertebrae"]]
        assert report["decision_levels"] == ["L1", "L2", "L3", "L4"] and report["threshold"] == 0.5
        if assessed:
            assert report["max_probability"] == max(v["probability"] for v in assessed)
            assert report["decision"] == int(any(v["probability"] >= 0.5 for v in assessed))
        else:
            assert report["decision"] is None and report["decision_name"].startswith("not assessed")
        assert not any(v["positive"] for v in report["vertebrae"] if not v["assessed"])
        assert report["dxa_device"] == patient["dxa_device"] and report["dxa_device_source"] == "input"
        for v in report["vertebrae"]:
            assert v["level_mismatch"] == (v["predicted_level"] != v["level"])
            assert len(v["gate"]) == 3 and abs(sum(v["gate"]) - 1.0) < 1e-3
            if v["assessed"]:
                t = predicted_t_score(v["bmd_g_cm2"], report["dxa_device"], v["level"], DEVICE_REFERENCES,
                                      LEVEL_SCALE)
                assert abs(t - v["t_score"]) < 1e-3
            else:
                assert v["t_score"] is None
        assert report["qc"]["level_mismatch"] == [v["level"] for v in report["vertebrae"] if v["level_mismatch"]]
        assert report["model"]["file"] == "model.pt" and len(report["model"]["sha256"]) == 16
        assert report["settings"]["roi_size"] == ARCH["roi_size"] and "source" not in report


def test_probabilities_and_bmd_match_the_network_on_the_rois(data, run):
    """The oracle: the ROI extraction, the CT window and the network written out for the first CT."""
    from monai_osteo.data.readers import LoadCTd
    from monai_osteo.networks.nets import VertebraNet, split_vertebra_output
    from monai_osteo.transforms import ExtractVertebraROI

    case = data["cases"][0]
    loaded = LoadCTd(keys=["image", "vertebrae"], label_keys="vertebrae")(dict(case))
    rois = ExtractVertebraROI(ARCH["roi_size"], ARCH["roi_spacing"])(loaded["image"], loaded["vertebrae"])
    x = torch.stack([(r.as_tensor() + 200.0) / 1500.0 for r, _ in rois])
    net = VertebraNet(widen_factor=ARCH["widen_factor"])
    net.load_state_dict(torch.load(data["model"]))
    device = torch.full((len(rois),), DEVICE_REFERENCES[case["dxa_device"]]["index"])
    with torch.no_grad():
        out = split_vertebra_output(net.eval()(x, device))
    report = json.loads((run["out"] / f"{run['summary']['reports'][0]['id']}.json").read_text())
    assert [v["level"] for v in report["vertebrae"]] == [r.meta["level"] for r, _ in rois]
    assert_allclose([v["probability"] for v in report["vertebrae"]], torch.softmax(out["class"], 1)[:, 1], atol=2e-4)
    assert_allclose([v["bmd_g_cm2"] for v in report["vertebrae"]],
                    out["bmd"] * BMD["bmd_std"] + BMD["bmd_mean"], atol=2e-4)


def test_one_case_by_ids_keeps_names_and_reports_the_reference_device(data, tmp_path):
    out = tmp_path / "out"
    case = data["cases"][1]
    wf = _workflow(data["root"], ct_file=case["image"], label_file=case["vertebrae"], keep_names=True,
                   report_png=False, model_file=str(data["model"]), predictions_dir=str(out))
    wf.run()
    stem = Path(case["image"]).name.removesuffix(".nii.gz")
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{stem}.json", "summary.json"])
    report = json.loads((out / f"{stem}.json").read_text())
    assert report["dxa_device"] == "Hologic" and report["dxa_device_source"].startswith("reference device")
    assert report["source"] == case["image"]


def test_inputs_are_checked_before_the_run(data, tmp_path):
    rel = [{"image": str(Path(c["image"]).relative_to(data["root"])),
            "vertebrae": str(Path(c["vertebrae"]).relative_to(data["root"]))} for c in data["cases"]]
    cases = [*rel, {"image": "x.nii.gz"}, {**rel[0], "dxa_device": "Norland"},
             {"image": f"{SECRET}.nii.gz", "vertebrae": "y.nii.gz"}]
    listing = data["root"] / "cases.json"  # relative paths are relative to the list's folder
    listing.write_text(json.dumps(cases))
    got = vertebra_inputs(str(listing), reference_device="GE Lunar", device_references=DEVICE_REFERENCES)
    assert [i["index"] for i in got["items"]] == [0, 1]
    assert [i["image"] for i in got["items"]] == [c["image"] for c in data["cases"]]
    assert all(i["dxa_device"] == "GE Lunar" and i["device"] == 1 and not i["dxa_device_given"] for i in got["items"])
    errors = [f["error"] for f in got["failed"]]
    assert "needs 'image' (the CT) and 'vertebrae'" in errors[0]
    assert "dxa_device must be one of ['GE Lunar', 'Hologic', 'MEDIX'], got 'Norland'" in errors[1]
    assert errors[2].startswith("no such file or folder: <input>, <input>") and SECRET not in errors[2]
    assert [f["id"][:6] for f in got["failed"]] == ["r00002", "r00003", "r00004"]
    with pytest.raises(FileNotFoundError, match="--input_datalist FILE"):
        vertebra_inputs(str(tmp_path / "absent.json"))
