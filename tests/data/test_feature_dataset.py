"""FrozenFeatureDataset: each item's image replaced by the frozen network's features, computed once in batches."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, MetaTensor
from monai.transforms import Compose, Lambdad, ScaleIntensityd

from monai_osteo.data import FrozenFeatureDataset


class _Counting(torch.nn.Module):
    """Conv + BatchNorm (train and eval differ) + global pooling; counts the images it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        assert type(x) is torch.Tensor  # plain tensors reach the network, not MetaTensors
        return self.net(x)


def _data(n=7):
    g = torch.Generator().manual_seed(0)
    return [{"image": MetaTensor(torch.rand(1, 12, 10, generator=g) * 50), "label": i % 2, "subject_id": f"s{i}"}
            for i in range(n)]


@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_features_equal_the_eval_mode_network_on_each_preprocessed_item(batch_size):
    torch.manual_seed(0)
    net = _Counting()
    net.net[1].running_mean.fill_(0.3)  # eval-mode statistics differ from a batch's
    data = _data()
    pre = Compose([ScaleIntensityd("image"), Lambdad("image", lambda x: x * 2 - 1)])
    ds = FrozenFeatureDataset(data, pre, net, batch_size=batch_size, progress=False)
    assert net.seen == len(data) and net.training  # encoded once, the network's mode restored
    net.eval()
    with torch.no_grad():
        oracle = [net(pre(d)["image"].as_tensor()[None])[0] for d in data]
    assert len(ds) == len(data)
    for item, ref, d in zip(ds, oracle, data):
        assert item["image"].shape == (4,) and item["image"].dtype == torch.float32
        assert not item["image"].requires_grad
        torch.testing.assert_close(item["image"], ref, rtol=1e-5, atol=1e-6)
        assert (item["label"], item["subject_id"]) == (d["label"], d["subject_id"])
    seen = net.seen
    _ = [ds[i] for i in range(len(ds))]
    assert net.seen == seen  # reading items does not run the network again
    assert data[0]["image"].shape == (1, 12, 10)  # the input items are left as they were


def test_items_collate_into_feature_batches():
    ds = FrozenFeatureDataset(_data(5), None, _Counting(), batch_size=2, progress=False)
    batch = next(iter(DataLoader(ds, batch_size=5)))
    assert batch["image"].shape == (5, 4) and batch["label"].tolist() == [0, 1, 0, 1, 0]


def test_bad_arguments_raise_named_errors():
    with pytest.raises(ValueError, match="batch_size"):
        FrozenFeatureDataset(_data(2), None, _Counting(), batch_size=0)
    with pytest.raises(ValueError, match=r"\(B, F\) features"):
        FrozenFeatureDataset(_data(2), None, torch.nn.Conv2d(1, 2, 3), progress=False)
