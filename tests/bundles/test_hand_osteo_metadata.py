"""hand_osteo bundle static files: metadata.json validates offline against the shipped MONAI metadata schema,
its network_data_format matches a freshly built bone-patch classifier, logging.conf and LICENSE are in place."""

from __future__ import annotations

import configparser
import hashlib
import json
import socket
import urllib.request
from pathlib import Path

import monai.apps.utils
import monai.bundle.scripts
import pytest
import torch
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "hand_osteo"
META = BUNDLE / "configs" / "metadata.json"
SCHEMA = BUNDLE / "docs" / "meta_schema.json"
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
# md5 of the shipped copy of meta_schema_20240725.json (guards against accidental edits of the vendored file)
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def offline(monkeypatch):
    """Make every route verify_metadata could take to the network fail loudly; count download_url calls."""

    def _no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    for target, name in [
        (monai.apps.utils, "urlopen"),
        (monai.apps.utils, "urlretrieve"),
        (monai.apps.utils, "_download_with_progress"),
        (urllib.request, "urlopen"),
        (urllib.request, "urlretrieve"),
        (socket.socket, "connect"),
    ]:
        monkeypatch.setattr(target, name, _no_network)
    calls = []
    real = monai.bundle.scripts.download_url

    def _spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(monai.bundle.scripts, "download_url", _spy)
    return calls


def _meta() -> dict:
    return json.loads(META.read_text())


def test_schema_is_the_shipped_20240725_copy():
    meta = _meta()
    assert meta["schema"] == SCHEMA_URL
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2019-09/schema"
    assert _md5(SCHEMA) == SCHEMA_MD5


def test_verify_metadata_offline(offline):
    before = _md5(SCHEMA)
    verify_metadata(meta_file=str(META), filepath=str(SCHEMA), hash_val=SCHEMA_MD5, hash_type="md5")
    assert len(offline) == 1 and offline[0]["url"] == SCHEMA_URL  # the existing file short-circuits the download
    assert _md5(SCHEMA) == before


@pytest.mark.parametrize("drop", ["numpy_version", "required_packages_version", "network_data_format"])
def test_verify_metadata_rejects_incomplete(offline, tmp_path, drop):
    meta = _meta()
    del meta[drop]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="Failed validating"):
        verify_metadata(meta_file=str(bad), filepath=str(SCHEMA), hash_val=SCHEMA_MD5, hash_type="md5")


def test_metadata_content():
    meta = _meta()
    assert meta["version"] == "0.4.1"
    assert {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.3.2", "0.4.0", "0.4.1"} <= set(meta["changelog"])
    assert meta["version"] == next(iter(meta["changelog"]))  # the newest entry first, as the model zoo
    assert meta["monai_version"] == "1.6.1"
    assert meta["intended_use"] == "Research only; not for clinical use"
    required = meta["required_packages_version"]
    assert set(required) == {"monai_osteo", "pytorch-ignite", "lightly", "pot", "scikit-learn", "itk", "pydicom",
                             "matplotlib", "tensorboard"}
    import monai_osteo

    assert required["monai_osteo"] == monai_osteo.__version__
    fmt = meta["network_data_format"]
    image = fmt["inputs"]["image"]
    assert (image["num_channels"], image["spatial_shape"], image["dtype"]) == (1, [224, 224], "float32")
    pred = fmt["outputs"]["pred"]
    assert pred["num_channels"] == 2 and pred["channel_def"] == {"0": "no osteoporosis", "1": "osteoporosis"}


def test_parsed_metadata_keeps_required_packages():
    # MONAI maps the deprecated "optional_packages_version" onto "required_packages_version" when it parses the
    # metadata, so shipping both would silently replace the required packages with the optional ones.
    assert "optional_packages_version" not in _meta()
    parser = ConfigParser()
    parser.read_meta(str(META))
    assert parser.get_parsed_content("_meta_::required_packages_version") == _meta()["required_packages_version"]


def _bone_classifier_cls():
    try:
        from monai_osteo.networks import nets
    except ImportError as e:  # the networks package is being extended; its own tests report a broken import
        pytest.skip(f"monai_osteo.networks.nets cannot be imported: {e}")
    cls = getattr(nets, "BoneClassifier", None)
    if cls is None:
        pytest.skip("monai_osteo.networks.nets.BoneClassifier is not available yet")
    return cls


def test_network_io_matches_bone_classifier():
    cls = _bone_classifier_cls()
    fmt = _meta()["network_data_format"]
    image, pred = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    torch.manual_seed(0)
    net = cls(spatial_dims=2, in_channels=image["num_channels"], out_channels=pred["num_channels"]).eval()
    x = torch.rand(1, image["num_channels"], *image["spatial_shape"], dtype=getattr(torch, image["dtype"]))
    with torch.no_grad():
        out = net(x)
    assert tuple(out.shape) == tuple(pred["spatial_shape"])  # (batch 1, 2 classes), model-zoo classifier convention
    assert out.dtype == getattr(torch, pred["dtype"])


def test_verify_net_in_out_bone_classifier(tmp_path):
    _bone_classifier_cls()
    config = tmp_path / "network.json"
    config.write_text(
        json.dumps(
            {
                "network_def": {
                    "_target_": "monai_osteo.networks.nets.BoneClassifier",
                    "spatial_dims": 2,
                    "in_channels": 1,
                    "out_channels": 2,
                }
            }
        )
    )
    verify_net_in_out(net_id="network_def", meta_file=str(META), config_file=str(config), device="cpu")


def test_logging_conf():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(BUNDLE / "configs" / "logging.conf")
    assert parser["loggers"]["keys"] == "root"
    assert parser["logger_root"]["level"] == "INFO"
    handler = parser["handler_" + parser["logger_root"]["handlers"]]
    assert handler["class"] == "StreamHandler"
    assert "%(levelname)s" in parser["formatter_" + handler["formatter"]]["format"]


def test_license_is_apache2():
    text = (BUNDLE / "LICENSE").read_text()
    assert "Apache License" in text.splitlines()[0] and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
