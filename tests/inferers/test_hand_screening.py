"""HandScreeningInferer on a phantom radiograph with an oracle segmentation: the 7 bones are found and each bone's
probability is the classifier's on that bone's patch, resized as the probe's training patches are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.transforms import Resize

from monai_osteo.data.labels import BONES
from monai_osteo.data.phantoms import render_subject, sample_subject
from monai_osteo.inferers import HandScreeningInferer
from monai_osteo.networks.nets import BoneClassifier
from monai_osteo.transforms import ExtractBonePatches
from tests.utils import assert_allclose


class _Oracle(torch.nn.Module):
    """Returns the one-hot ground truth (resized to the input) as class probabilities."""

    def __init__(self, truth: np.ndarray):
        super().__init__()
        self.truth = torch.from_numpy(truth.astype(np.int64))

    def forward(self, x):
        lab = F.interpolate(self.truth[None, None].float(), size=x.shape[2:], mode="nearest-exact")[0, 0].long()
        return F.one_hot(lab, 8).permute(2, 0, 1)[None].float()


@pytest.mark.parametrize("normalization", [None, "bone_zscore"])
def test_bones_and_probabilities_match_the_patch_path(normalization):
    torch.manual_seed(0)
    hand, _ = render_subject(sample_subject(np.random.default_rng(0)), seed=0, stream=9, index=0, height=176)
    img = torch.from_numpy(hand.image.astype(np.float32) / np.iinfo(hand.image.dtype).max)[None]
    size = (img.shape[1], img.shape[2])  # the radiograph's own aspect: no letterbox padding
    clf = BoneClassifier(backbone="resnet18").eval()
    inferer = HandScreeningInferer(_Oracle(hand.truth), segmentation_size=size, patch_size=32, uncertainty=True,
                                   patch_normalization=normalization)
    res = inferer(img[None], clf)[0]
    assert res["bones_found"] == list(BONES) and res["confidence"] == 1.0
    extractor = ExtractBonePatches()
    bones, missing = extractor.find_bones(torch.from_numpy(hand.truth.astype(np.int64))[None], size)
    patches, _ = extractor.make_patches(img, bones, missing, masks=False)
    resize = Resize((32, 32), mode="bilinear", anti_aliasing=True)

    def norm(p):  # oracle of "bone_zscore": the non-zero pixels standardised, the background kept at 0
        if normalization is None:
            return p
        p = torch.as_tensor(p).clone()
        m = p != 0
        p[m] = (p[m] - p[m].mean()) / p[m].std(unbiased=False)
        return p

    with torch.no_grad():
        p1 = torch.softmax(clf(torch.stack([torch.as_tensor(resize(norm(p))) for p in patches])), 1)[:, 1]
    assert_allclose(torch.tensor([res["bone_probabilities"][b] for b in BONES]), p1, atol=1e-5, rtol=1e-5)
    assert res["labels"].shape == hand.truth.shape and set(np.unique(res["labels"])) == set(range(8))
    assert res["uncertainty"] is not None and res["class_probabilities"].shape == (7, 2)
