"""The bone-patch cache: save_bone_patch writes float16 atomically; LoadBonePatchd reads it back as float32."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from monai_osteo.data.readers.patches import LoadBonePatchd, save_bone_patch
from tests.utils import assert_allclose


@pytest.mark.parametrize("as_tensor", [False, True])
def test_load_bone_patch(tmp_path, as_tensor):
    arr = np.random.default_rng(0).random((1, 6, 6)).astype(np.float32)
    path = tmp_path / "cache" / "p.npy"
    save_bone_patch(path, torch.from_numpy(arr) if as_tensor else arr)
    assert [p.name for p in path.parent.iterdir()] == ["p.npy"]  # no temporary file left
    assert np.load(path).dtype == np.float16
    out = LoadBonePatchd(keys="image")({"image": str(path), "label": 1})
    assert isinstance(out["image"], torch.Tensor) and out["image"].dtype == torch.float32
    assert tuple(out["image"].shape) == (1, 6, 6) and out["label"] == 1
    assert_allclose(out["image"], arr, atol=1e-3)  # float16 keeps 11 bits in [0, 1]
    assert_allclose(out["image"], arr.astype(np.float16).astype(np.float32))  # exactly the float16 value


def test_save_bone_patch_overwrites_atomically(tmp_path):
    path = tmp_path / "p.npy"
    save_bone_patch(path, np.zeros((1, 4, 4)))
    save_bone_patch(path, np.ones((1, 4, 4)))
    assert_allclose(LoadBonePatchd(keys="image")({"image": path})["image"], np.ones((1, 4, 4), np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["p.npy"]


def test_load_bone_patch_bad_shape_names_the_file(tmp_path):
    path = tmp_path / "flat_patch.npy"
    save_bone_patch(path, np.zeros((6, 6)))
    with pytest.raises(ValueError, match=re.escape(str(path)) + r".*\(1, s, s\), got \(6, 6\)"):
        LoadBonePatchd(keys="image")({"image": str(path)})
    path3 = tmp_path / "rgb_patch.npy"
    save_bone_patch(path3, np.zeros((3, 6, 6)))
    with pytest.raises(ValueError, match=re.escape(str(path3)) + r".*got \(3, 6, 6\)"):
        LoadBonePatchd(keys="image")({"image": str(path3)})
