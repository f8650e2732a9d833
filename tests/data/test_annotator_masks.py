from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from monai_osteo.data import LoadAnnotatorMasksd, RadiographReadError


def _png(path, arr):
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return str(path)


def test_stack_weights_and_empty_maps(tmp_path):
    a = np.zeros((6, 5), np.uint8)
    a[1:3, 2] = 4
    b = np.zeros((6, 5), np.uint8)  # an annotator who drew nothing is a valid (constant) label map
    paths = [_png(tmp_path / "a.png", a), _png(tmp_path / "b.png", b)]
    out = LoadAnnotatorMasksd("masks")({"masks": paths, "mask_weights": [0.25, 0.75]})
    assert out["masks"].shape == (2, 6, 5) and out["masks"].dtype == torch.int64
    assert (out["masks"][0].numpy() == a).all() and out["masks"][0, 1, 2] == 4  # rows stay rows
    assert out["mask_weights"].tolist() == [0.25, 0.75]
    assert out["masks"].meta["annotator_files"] == paths
    assert LoadAnnotatorMasksd("masks")({"masks": paths})["mask_weights"].tolist() == [0.5, 0.5]


def test_errors(tmp_path):
    a = _png(tmp_path / "a.png", np.eye(4) * 2)
    small = _png(tmp_path / "s.png", np.eye(3))
    with pytest.raises(RadiographReadError, match="s.png.*differs"):
        LoadAnnotatorMasksd("masks")({"masks": [a, small]})
    soft = tmp_path / "soft.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(4, 4).astype(np.float32), np.eye(4)), soft)
    with pytest.raises(RadiographReadError, match="soft.nii.gz.*not a label map"):
        LoadAnnotatorMasksd("masks")({"masks": [str(soft)]})
    with pytest.raises(ValueError, match="2 non-negative weights summing to 1"):
        LoadAnnotatorMasksd("masks")({"masks": [a, a], "mask_weights": [0.9, 0.9]})
