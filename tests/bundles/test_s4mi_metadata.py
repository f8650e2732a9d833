"""s4mi bundle static files: metadata.json validates offline against the shipped MONAI schema, its
network_data_format matches the segmentation networks, logging.conf, LICENSE and docs are in place."""

from __future__ import annotations

import hashlib
import json

import torch
from monai.bundle import verify_metadata

from monai_osteo.bundle.s4mi import segmentation_network
from tests.bundles.s4mi_tiny import BUNDLE, CONFIGS
from tests.bundles.test_hand_osteo_metadata import SCHEMA_MD5, offline  # noqa: F401  (the offline fixture)

META = CONFIGS / "metadata.json"
SCHEMA = BUNDLE / "docs" / "meta_schema.json"


def test_verify_metadata_offline(offline):  # noqa: F811
    assert hashlib.md5(SCHEMA.read_bytes()).hexdigest() == SCHEMA_MD5
    verify_metadata(meta_file=str(META), filepath=str(SCHEMA), hash_val=SCHEMA_MD5, hash_type="md5")
    assert len(offline) == 1  # the shipped schema short-circuits the download


def test_metadata_content_and_static_files():
    import monai_osteo

    meta = json.loads(META.read_text())
    assert meta["version"] == next(iter(meta["changelog"])) and meta["intended_use"].startswith("Research only")
    assert meta["required_packages_version"]["monai_osteo"] == monai_osteo.__version__
    assert (BUNDLE / "LICENSE").is_file() and (CONFIGS / "logging.conf").is_file()
    assert (BUNDLE / "docs" / "README.md").is_file()


def test_network_io_matches_the_segmentation_networks():
    fmt = json.loads(META.read_text())["network_data_format"]
    image, pred = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    size = image["spatial_shape"]
    for arch, kw in (("unet", {"unet_features": (4, 4, 8, 8, 16, 4)}), ("swin", {"swin_feature_size": 12})):
        net = segmentation_network(arch, image["num_channels"], pred["num_channels"], size, **kw).eval()
        with torch.no_grad():
            out = net(torch.rand(1, image["num_channels"], *size))
        assert tuple(out.shape) == (1, pred["num_channels"], *size), arch
