"""vertebra_osteo bundle static files: metadata.json validates offline against the shipped MONAI schema, its
network_data_format matches VertebraNet (with the DXA device as the extra forward argument), ckpt_export's
TorchScript model equals the eager one, logging.conf, LICENSE and docs are in place."""

from __future__ import annotations

import hashlib
import json

import torch
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out

from tests.bundles.test_hand_osteo_metadata import SCHEMA_MD5, offline  # noqa: F401  (the offline fixture)
from tests.bundles.vertebra_osteo_tiny import BUNDLE, CONFIGS

META = CONFIGS / "metadata.json"
SCHEMA = BUNDLE / "docs" / "meta_schema.json"


def test_verify_metadata_offline(offline):  # noqa: F811
    assert hashlib.md5(SCHEMA.read_bytes()).hexdigest() == SCHEMA_MD5
    verify_metadata(meta_file=str(META), filepath=str(SCHEMA), hash_val=SCHEMA_MD5, hash_type="md5")
    assert len(offline) == 1


def test_metadata_content_and_static_files():
    import monai_osteo

    meta = json.loads(META.read_text())
    assert meta["version"] == next(iter(meta["changelog"])) and meta["intended_use"].startswith("Research only")
    assert meta["required_packages_version"]["monai_osteo"] == monai_osteo.__version__
    assert (BUNDLE / "LICENSE").is_file() and (CONFIGS / "logging.conf").is_file()
    assert (BUNDLE / "docs" / "README.md").is_file()


def test_network_io_matches_vertebra_net():
    fmt = json.loads(META.read_text())["network_data_format"]
    image, pred = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    from monai_osteo.networks.nets import VertebraNet

    net = VertebraNet(widen_factor=0.125).eval()
    with torch.no_grad():
        out = net(torch.rand(2, image["num_channels"], *image["spatial_shape"]), torch.tensor([0, 2]))
    assert tuple(out.shape) == (2, pred["num_channels"])
    verify_net_in_out(net_id="network_def", meta_file=str(META), config_file=str(CONFIGS / "train.json"),
                      device="cpu", p=1, n=1, any=32, widen_factor=0.125, bundle_root=str(BUNDLE),
                      extra_forward_args={"device": torch.tensor([1])})


def test_ckpt_export_torchscript_equals_eager(tmp_path):
    from monai_osteo.networks.nets import VertebraNet

    torch.manual_seed(0)
    net = VertebraNet(widen_factor=0.125).eval()
    torch.save({"model": net.state_dict()}, tmp_path / "model.pt")
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(tmp_path / "model.pt"),
                meta_file=str(META), config_file=str(CONFIGS / "train.json"), key_in_ckpt="model",
                widen_factor=0.125, bundle_root=str(BUNDLE))
    scripted = torch.jit.load(str(tmp_path / "model.ts")).eval()
    x, d = torch.rand(3, 1, 32, 32, 32), torch.tensor([0, 1, 2])
    with torch.no_grad():
        torch.testing.assert_close(scripted(x, d), net(x, d), rtol=1e-5, atol=1e-5)
