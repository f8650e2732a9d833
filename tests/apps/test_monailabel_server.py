"""The MONAI Label app over HTTP: a real ``monailabel start_server`` on 127.0.0.1 with a tiny phantom datastore and
tiny trained hand_osteo models; every answer is checked against the bundles' own code run in this process.

These tests need monailabel: they run in its own environment (``bash scripts/run.sh label-test``, which
``bash scripts/run.sh test`` calls after the main suite); the main environment skips them."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_osteo.bundle.label_app import HandScreener, bone_uncertainty, read_bone_bundle
from monai_osteo.data import LoadRadiograph
from tests.bundles.hand_osteo_tiny import ARCH, tiny_train, workflow

pytest.importorskip("monailabel", reason="MONAI Label is not in this environment: bash scripts/run.sh label-test")

ROOT = Path(__file__).resolve().parents[2]
BONE_LABELS = {"ulna": 1, "radius": 2, "m1": 3, "m2": 4, "m3": 5, "m4": 6, "m5": 7}
N_IMAGES = 5
#: the segmentation is trained long enough (60 epochs at 128x88, ~2.5 min on 2 busy cores) to find all 7 bones;
#: the rest of the run stays tiny
LABEL_ARCH = {**ARCH, "seg_spatial_size": [128, 88], "seg_channels": [8, 16, 32], "seg_head_channels": 8}
SEG_EPOCHS = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model_dir = root / "app_model"
        conf = {"hand_osteo_run": str(root / "run"), "hand_osteo_configs": "quick.json",
                "hand_osteo_overrides": json.dumps(LABEL_ARCH, separators=(",", ":")),  # no spaces: the launcher splits
                "model_dir": str(self.model_dir), "max_epochs": "1"}
        cmd = [str(Path(sys.executable).parent / "monailabel"), "start_server", "--app",
               str(ROOT / "apps" / "monailabel"), "--studies", str(root / "studies"), "--host", "127.0.0.1",
               "--port", str(self.port)]
        for k, v in conf.items():
            cmd += ["--conf", k, v]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "MONAILABEL_PYEXE": sys.executable, "OMP_NUM_THREADS": "1"}
        self.log = open(root / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                self.get("/info/")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1)
        self.stop()
        raise RuntimeError(f"server did not answer in 180 s:\n{self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return (self.root / "server.log").read_text(errors="replace")[-4000:]

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.read()

    def get(self, path: str):
        return json.loads(self.request("GET", path)[1])

    def post_json(self, path: str, payload: dict | None = None):
        return self.request("POST", path, json.dumps(payload or {}).encode(), {"Content-Type": "application/json"})

    def put_file(self, path: str, field: str, file: Path):
        boundary = "monaiosteo" + os.urandom(8).hex()
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file.name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + file.read_bytes() + \
            f"\r\n--{boundary}--\r\n".encode()
        return self.request("PUT", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def stop(self) -> None:  # by its PID (the launcher's process group: the uvicorn worker too)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("label")
    torch.set_num_threads(1)
    wf = workflow("train.json", None, **tiny_train(root, seg_epochs=SEG_EPOCHS, **LABEL_ARCH))
    wf.run()
    wf.finalize()
    studies = root / "studies"
    studies.mkdir()
    for p in sorted((root / "data" / "images").glob("*.png"))[:N_IMAGES]:
        shutil.copy(p, studies / p.name)
    t0 = time.time()
    srv = Server(root)
    srv.startup_seconds = time.time() - t0
    yield srv
    srv.stop()
    assert srv.proc.poll() is not None


def _image_ids(server) -> list[str]:
    return sorted(p.stem for p in (server.root / "studies").glob("*.png"))


def test_info_lists_both_models_with_labels_and_strategies(server):
    info = server.get("/info/")
    assert set(info["models"]) == {"hand_bones", "hand_screening"}
    for name in ("hand_bones", "hand_screening"):
        assert info["models"][name]["type"] == "segmentation"
        assert info["models"][name]["labels"] == BONE_LABELS
        assert info["models"][name]["dimension"] == 2
    assert set(info["trainers"]) == {"hand_bones"}
    assert {"bone_uncertainty", "random", "first"} <= set(info["strategies"])
    assert "bone_uncertainty" in info["scoring"]


def test_infer_hand_bones_returns_the_bundle_label_map(server):
    image_id = _image_ids(server)[0]
    status, png = server.request("POST", f"/infer/hand_bones?image={image_id}&output=image")
    assert status == 200
    labels = np.array(Image.open(io.BytesIO(png)))
    image = LoadRadiograph()(str(server.root / "studies" / f"{image_id}.png"))
    assert labels.shape == tuple(image.shape[1:]) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(8))  # background and all 7 bones
    # oracle: the working copy of the bundle run by MONAI's own bundle runner on the same image
    bundle = server.model_dir / "hand_bone_segmentation"
    out = server.root / "bundle_out"
    wf = workflow("inference.json", "infer", bundle / "configs", bundle_root=str(bundle), output_dir=str(out),
                  dataset_dir=str(server.root / "studies" / f"{image_id}.png"))
    wf.run()
    expected = np.array(Image.open(next(out.glob("*_bones.png"))))
    assert np.mean(expected == labels) > 0.999
    params = json.loads(server.post_json(f"/infer/hand_bones?image={image_id}&output=json")[1])
    assert params["bones_found"] == [k for k, v in BONE_LABELS.items() if (labels == v).any()]


def test_infer_hand_screening_returns_labels_and_the_screening_report(server):
    image_id = _image_ids(server)[1]
    path = server.root / "studies" / f"{image_id}.png"
    report = json.loads(server.post_json(f"/infer/hand_screening?image={image_id}&output=json")[1])
    labels = np.array(Image.open(io.BytesIO(server.request("POST", f"/infer/hand_screening?image={image_id}"
                                                                    "&output=image")[1])))
    expected_labels, expected = HandScreener(server.root / "run", ("quick.json",), overrides=LABEL_ARCH)(path)
    np.testing.assert_array_equal(labels, expected_labels)
    for key in ("decision", "decision_name", "bones_found", "bones_missing", "qc_flags", "qc_messages"):
        assert report[key] == expected[key], key
    assert report["bones_found"] == ["ulna", "radius", "M1", "M2", "M3", "M4", "M5"]
    assert set(np.unique(labels)) == set(range(8))
    assert report["decision"] in (-1, 0, 1)
    if np.isnan(expected["probability"]):  # no decision (a gate refused it): no probability, as JSON null
        assert report["decision"] == -1 and report["probability"] is None
    else:
        np.testing.assert_allclose(report["probability"], expected["probability"], rtol=1e-5)
    assert set(report["bone_probabilities"]) == {"ulna", "radius", "M1", "M2", "M3", "M4", "M5"}
    assert {g["gate"] for g in report["gates"]} == {"input", "anatomy", "features"}
    assert {"confidence", "mean_entropy_in_bones", "mean_mutual_information_in_bones"} <= set(report["segmentation"])
    assert "source" not in report and image_id not in json.dumps(report)  # no file name leaves the process


def test_activelearning_returns_the_most_uncertain_image(server):
    status, body = server.post_json("/activelearning/bone_uncertainty")
    chosen = json.loads(body)
    net, size = read_bone_bundle(server.model_dir / "hand_bone_segmentation")
    labelled = {p.stem for p in (server.root / "studies" / "labels" / "final").glob("*")}
    scores = {i: bone_uncertainty(net, LoadRadiograph()(str(server.root / "studies" / f"{i}.png")), size)
              for i in _image_ids(server) if i not in labelled}
    stored = {i: server.get(f"/datastore/image/info?image={i}").get("bone_mutual_information") for i in scores}
    assert chosen["id"] == max(scores, key=scores.get), (chosen, scores, stored)
    np.testing.assert_allclose(chosen["score"], scores[chosen["id"]], rtol=1e-5)


def test_train_writes_a_new_checkpoint_that_infer_uses(server):
    ids = _image_ids(server)[:3]
    for i in ids:  # the annotators' first label map plays the user's corrected label
        status, _ = server.put_file(f"/datastore/label?image={i}", "label",
                                    server.root / "data" / "masks" / f"{i}_a1.png")
        assert status == 200
    model = server.model_dir / "hand_bone_segmentation" / "models" / "model.pt"
    before, mtime = torch.load(model, map_location="cpu"), model.stat().st_mtime_ns
    t0 = time.time()
    status, _ = server.post_json("/train/hand_bones?run_sync=true", {"max_epochs": 1, "val_split": 0.34})
    server.train_seconds = time.time() - t0
    assert status == 200, server.tail()
    assert model.stat().st_mtime_ns != mtime, server.tail()
    after = torch.load(model, map_location="cpu")
    assert set(after) == set(before)
    assert any(not torch.equal(after[k], before[k]) for k in before)
    assert (model.parent / "last.pt").is_file()
    # the unlabelled images are re-scored with the new model, and labelled ones are no longer proposed
    chosen = json.loads(server.post_json("/activelearning/bone_uncertainty")[1])
    assert chosen["id"] not in ids
    info = server.get(f"/datastore/image/info?image={chosen['id']}")
    assert info["bone_mutual_information"]["model_version"] == pytest.approx(model.stat().st_mtime)


def test_a_corrupt_image_gets_a_clear_error_and_the_server_keeps_serving(server):
    bad = server.root / "bad_upload.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 10)
    status, _ = server.put_file("/datastore/?image=bad_upload", "file", bad)
    assert status == 200
    for model in ("hand_bones", "hand_screening"):
        with pytest.raises(urllib.error.HTTPError) as err:
            server.post_json(f"/infer/{model}?image=bad_upload&output=json")
        assert err.value.code == 422, model
        detail = json.loads(err.value.read())["detail"]
        assert "cannot" in detail and "replace it with a DICOM, PNG" in detail, detail
        assert str(server.root) not in detail and "bad_upload" not in detail, detail  # no path or file name
    assert set(server.get("/info/")["models"]) == {"hand_bones", "hand_screening"}
    status, png = server.request("POST", f"/infer/hand_bones?image={_image_ids(server)[0]}&output=image")
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
