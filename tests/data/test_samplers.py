"""TwoStreamBatchSampler: batch composition and order, epoch coverage, secondary cycling, seeding, sharding, errors."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from monai_osteo.data.samplers import TwoStreamBatchSampler

PRIMARY = list(range(0, 23))  # 23 labelled: 5 batches of 4, tail of 3 dropped
SECONDARY = list(range(100, 107))  # 7 unlabelled: shorter than the 5 * 3 draws of an epoch


def _sampler(**kw):
    args = {"primary_indices": PRIMARY, "secondary_indices": SECONDARY, "batch_size": 7, "secondary_batch_size": 3}
    return TwoStreamBatchSampler(**{**args, **kw})


def test_batch_composition_primary_then_secondary():
    batches = list(_sampler())
    assert len(batches) == len(_sampler()) == 23 // 4
    for b in batches:
        assert len(b) == 7
        assert all(i in PRIMARY for i in b[:4]) and all(i in SECONDARY for i in b[4:])


def test_primary_once_per_epoch_tail_dropped():
    primary = [i for b in _sampler() for i in b[:4]]
    assert len(primary) == len(set(primary)) == 20  # no repeat, 3 left out
    full = list(_sampler(primary_indices=list(range(20))))
    assert sorted(i for b in full for i in b[:4]) == list(range(20))  # divisible: every index exactly once


def test_secondary_cycles_through_permutations():
    secondary = [i for b in _sampler() for i in b[4:]]  # 15 draws of a 7-long stream
    for start in (0, 7):  # each full cycle is a permutation of the secondary list
        assert sorted(secondary[start:start + 7]) == SECONDARY
    assert set(Counter(secondary).values()) <= {2, 3}
    long = list(_sampler(secondary_indices=list(range(100, 200))))  # longer than an epoch's draws: no repeat
    drawn = [i for b in long for i in b[4:]]
    assert len(drawn) == len(set(drawn)) == 15


def test_secondary_shorter_than_its_batch():
    batches = list(_sampler(secondary_indices=[100], secondary_batch_size=2, batch_size=6))  # S4MI "99p": one image
    assert all(b[4:] == [100, 100] for b in batches)


def test_deterministic_per_seed_and_epoch():
    a, b = _sampler(seed=3), _sampler(seed=3)
    assert list(a) == list(b) == list(a)  # same epoch: same batches, also when iterated again
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(_sampler(seed=4)) != list(_sampler(seed=3))


def test_zero_secondary_batch():
    batches = list(_sampler(secondary_indices=[], secondary_batch_size=0, batch_size=4))
    assert len(batches) == 5 and all(len(b) == 4 and max(b) < 23 for b in batches)


@pytest.mark.parametrize("replicas", [2, 3])
def test_sharding_round_robin_matches_single_process(replicas):
    single = list(_sampler(primary_indices=list(range(30)), batch_size=5, secondary_batch_size=2))  # 10 batches
    shards = [list(_sampler(primary_indices=list(range(30)), batch_size=5, secondary_batch_size=2,
                            num_replicas=replicas, rank=r)) for r in range(replicas)]
    per_rank = len(single) // replicas
    assert [len(s) for s in shards] == [per_rank] * replicas
    interleaved = [shards[r][k] for k in range(per_rank) for r in range(replicas)]
    assert interleaved == single[:per_rank * replicas]
    primaries = [i for s in shards for b in s for i in b[:3]]
    assert len(primaries) == len(set(primaries))  # ranks never share a labelled item


def test_sharding_follows_set_epoch():
    ranks = [_sampler(num_replicas=2, rank=r) for r in range(2)]
    single = _sampler()
    for s in [*ranks, single]:
        s.set_epoch(5)
    shards = [list(s) for s in ranks]
    assert [shards[r][k] for k in range(2) for r in range(2)] == list(single)[:4]
    single.set_epoch(0)
    assert [shards[r][k] for k in range(2) for r in range(2)] != list(single)[:4]


class _Items(Dataset):
    def __len__(self):
        return 200

    def __getitem__(self, i):
        return {"index": i, "image": torch.full((1, 2, 2), float(i))}


def test_dataloader_batch_sampler():
    sampler = _sampler()
    loader = DataLoader(_Items(), batch_sampler=sampler, num_workers=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 5
    for got, expected in zip(batches, list(sampler)):
        assert got["index"].tolist() == expected
        assert got["image"].shape == (7, 1, 2, 2) and got["image"][:, 0, 0, 0].tolist() == [float(i) for i in expected]


def test_errors():
    with pytest.raises(ValueError, match="secondary_indices is empty"):
        _sampler(secondary_indices=[])
    with pytest.raises(ValueError, match="at least one primary batch"):
        _sampler(primary_indices=[0, 1, 2])
    with pytest.raises(ValueError, match="secondary_batch_size must be in"):
        _sampler(secondary_batch_size=7)
    with pytest.raises(ValueError, match="fewer than num_replicas"):
        _sampler(primary_indices=list(range(8)), num_replicas=3, rank=0)
    with pytest.raises(ValueError, match="rank must be in"):
        _sampler(num_replicas=2, rank=2)
