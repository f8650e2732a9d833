"""FrozenFeatures(d): the frozen network's eval-mode output, without gradients; the dict version replaces the key."""

from __future__ import annotations

import torch
from monai.transforms import Compose

from monai_osteo.transforms.features import FrozenFeatures, FrozenFeaturesd
from tests.utils import assert_allclose


def _net():
    torch.manual_seed(0)
    # Dropout and BatchNorm make train and eval mode differ
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Dropout(0.5), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 5))


def _reference(net, img):
    net.eval()
    with torch.no_grad():
        return net(img[None])[0]


def test_features_equal_eval_network_without_grad():
    net = _net().train()
    with torch.no_grad():
        net[1].running_mean.fill_(0.3)  # eval statistics differ from the batch's own
    img = torch.rand(1, 12, 12)
    t = FrozenFeatures(net)
    assert not net.training  # set to eval on construction
    net.train()  # put back into training by someone else: the transform still computes eval features
    out = t(img)
    assert not net.training
    assert out.shape == (5,) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert not out.requires_grad and out.grad_fn is None
    assert_allclose(out, _reference(net, img), atol=1e-6)
    assert torch.equal(out, t(img))  # deterministic: dropout is off
    assert all(p.requires_grad for p in net.parameters())  # the network itself is not modified


def test_features_accept_numpy_and_other_dtypes():
    net = _net()
    img = torch.rand(1, 10, 10, dtype=torch.float64)
    out = FrozenFeatures(net)(img.numpy())
    assert out.dtype == torch.float32
    assert_allclose(out, _reference(net, img.float()), atol=1e-6)


def test_dict_version_replaces_key():
    net = _net()
    img = torch.rand(1, 12, 12)
    t = Compose([FrozenFeaturesd(keys="image", network=net)])
    d = t({"image": img, "label": 1, "subject_id": "s1"})
    assert d["label"] == 1 and d["subject_id"] == "s1"
    assert d["image"].shape == (5,)
    assert torch.equal(d["image"], FrozenFeatures(net)(img))
    assert_allclose(d["image"], _reference(net, img), atol=1e-6)
    assert FrozenFeaturesd(keys=["image", "other"], network=net, allow_missing_keys=True)({"image": img})["image"] \
        .shape == (5,)
