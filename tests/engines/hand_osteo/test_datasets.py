"""ShuffleSampler against torch's DistributedSampler; the lazily filled BonePatchDataset; LoadBonePatchd."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from monai_osteo.engines.hand_osteo.datasets import BonePatchDataset, LoadBonePatchd, ShuffleSampler
from tests.utils import assert_allclose


def test_each_epoch_is_a_permutation_and_epochs_differ():
    sampler = ShuffleSampler(list(range(20)), seed=3, num_replicas=1, rank=0)
    epochs = [list(sampler) for _ in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(20))
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    assert epochs[0] != list(range(20))
    sampler.set_epoch(1)  # an explicit epoch replays that epoch's order
    assert list(sampler) == epochs[1]


def test_same_seed_reproducible_other_seed_differs():
    a = ShuffleSampler(list(range(30)), seed=5, num_replicas=1, rank=0)
    b = ShuffleSampler(list(range(30)), seed=5, num_replicas=1, rank=0)
    c = ShuffleSampler(list(range(30)), seed=6, num_replicas=1, rank=0)
    first_a, first_b, first_c = list(a), list(b), list(c)
    assert first_a == first_b and list(a) == list(b)
    assert first_a != first_c


def test_no_shuffle_keeps_order():
    assert list(ShuffleSampler(list(range(7)), shuffle=False, num_replicas=1, rank=0)) == list(range(7))


@pytest.mark.parametrize("n", [9, 10, 11])
def test_shards_cover_everything_and_match_distributed_sampler(n):
    data = list(range(n))
    shards = []
    for rank in range(3):
        sampler = ShuffleSampler(data, seed=11, num_replicas=3, rank=rank)
        ref = DistributedSampler(data, num_replicas=3, rank=rank, shuffle=True, seed=11)
        shard = list(sampler)
        assert len(shard) == len(sampler) == math.ceil(n / 3)
        assert shard == list(ref)  # same permutation, same padding, same split
        shards.append(shard)
    merged = [i for s in shards for i in s]
    assert set(merged) == set(data)
    assert len(merged) == 3 * math.ceil(n / 3)
    assert len(merged) - len(set(merged)) == 3 * math.ceil(n / 3) - n  # padding repeats indices


def test_padding_longer_than_the_dataset():
    data = [0]
    for rank in range(3):
        sampler = ShuffleSampler(data, seed=0, num_replicas=3, rank=rank)
        assert list(sampler) == list(DistributedSampler(data, num_replicas=3, rank=rank, seed=0)) == [0]


def test_length_is_read_lazily():
    data: list[int] = []
    sampler = ShuffleSampler(data, num_replicas=3, rank=1)
    assert len(sampler) == 0 and list(sampler) == []
    data.extend(range(8))  # filled after the loader (and its sampler) is built
    assert len(sampler) == 3
    shard = list(sampler)
    assert len(shard) == 3 and set(shard) <= set(range(8))


class _StubPatches:
    """Exposes ``records(role, splits)``: nothing before the (simulated) patch stage has run, then two records."""

    def __init__(self):
        self.ran = False
        self.calls: list[tuple] = []

    def records(self, role, splits):
        self.calls.append((role, splits))
        if not self.ran:
            return []
        recs = [{"patch": "/c/p0.npy", "label": 1, "bone": "M2", "subject_id": "s1", "split": "training"},
                {"patch": "/c/p1.npy", "label": 0, "bone": "ulna", "subject_id": "s2", "split": "validation"}]
        return [r for r in recs if splits is None or r["split"] in splits]


def test_bone_patch_dataset_fills_after_the_stage_ran():
    stub = _StubPatches()
    ds = BonePatchDataset(stub, role="probe", splits=["training", "validation"])
    assert len(ds) == 0
    stub.ran = True
    assert len(ds) == 2
    assert stub.calls[-1] == ("probe", ("training", "validation"))
    item = ds[0]
    assert item["image"] == "/c/p0.npy" and item["label"] == 1
    assert (item["bone"], item["subject_id"], item["patch"]) == ("M2", "s1", "/c/p0.npy")
    n_calls = len(stub.calls)
    _ = ds[1], len(ds)
    assert len(stub.calls) == n_calls  # cached once filled


def test_bone_patch_dataset_hides_labels_and_applies_transform():
    stub = _StubPatches()
    stub.ran = True
    ds = BonePatchDataset(stub, role="ssl", splits=("training",), labels=False,
                          transform=lambda d: {**d, "seen": True})
    assert len(ds) == 1
    item = ds[0]
    assert item["label"] == -1 and item["seen"] is True
    assert stub.calls[-1] == ("ssl", ("training",))
    assert BonePatchDataset(stub, role="ssl").data[1]["label"] == 0  # labels kept by default; splits None = all


def test_bone_patch_dataset_role_validation():
    with pytest.raises(ValueError, match=re.escape("role must be 'ssl' or 'probe', got 'train'")):
        BonePatchDataset(_StubPatches(), role="train")


def test_load_bone_patch(tmp_path):
    arr = np.random.default_rng(0).random((1, 6, 6)).astype(np.float16)
    path = tmp_path / "p.npy"
    np.save(path, arr)
    out = LoadBonePatchd(keys="image")({"image": str(path), "label": 1})
    assert isinstance(out["image"], torch.Tensor) and out["image"].dtype == torch.float32
    assert tuple(out["image"].shape) == (1, 6, 6) and out["label"] == 1
    assert_allclose(out["image"], arr.astype(np.float32))


def test_load_bone_patch_bad_shape_names_the_file(tmp_path):
    path = tmp_path / "flat_patch.npy"
    np.save(path, np.zeros((6, 6), np.float16))
    with pytest.raises(ValueError, match=re.escape(str(path)) + r".*\(1, s, s\), got \(6, 6\)"):
        LoadBonePatchd(keys="image")({"image": str(path)})
