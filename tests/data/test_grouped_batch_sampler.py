"""GroupedBatchSampler: single-group batches, epoch coverage, seeding, reshuffling per epoch, sharding, errors; the
SSL trainer reshuffles it every epoch; the hand_osteo SSL stage builds it from ``ssl_batch_grouping``."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from monai_osteo.data import GroupedBatchSampler

# 3 groups of unequal sizes: with batch 4 and drop_last, 23 // 4 + 10 // 4 + 5 // 4 = 5 + 2 + 1 = 8 batches
GROUPS = ["ulna"] * 23 + ["M2"] * 10 + ["radius"] * 5
GROUPS = [GROUPS[i] for i in torch.randperm(len(GROUPS), generator=torch.Generator().manual_seed(0))]


def test_every_batch_holds_one_group_and_each_item_at_most_once():
    sampler = GroupedBatchSampler(GROUPS, 4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 8 and all(len(b) == 4 for b in batches)
    assert all(len({GROUPS[i] for i in b}) == 1 for b in batches)
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen))
    # per group, only the incomplete tail is left out
    assert Counter(GROUPS[i] for i in seen) == {"ulna": 20, "M2": 8, "radius": 4}


def test_keep_last_covers_every_item_once():
    batches = list(GroupedBatchSampler(GROUPS, 4, drop_last=False))
    assert sorted(i for b in batches for i in b) == list(range(len(GROUPS)))
    assert all(len({GROUPS[i] for i in b}) == 1 for b in batches)


def test_batches_of_the_groups_are_interleaved_and_reshuffled_every_epoch():
    sampler = GroupedBatchSampler(GROUPS, 4, seed=3)
    first = list(sampler)
    assert list(GroupedBatchSampler(GROUPS, 4, seed=3)) == first  # seeded: same epoch, same batches
    assert list(GroupedBatchSampler(GROUPS, 4, seed=4)) != first
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(map(sorted, second)) != sorted(map(sorted, first))
    # across 20 epochs the group of the first batch is not always the same (batches of all groups are permuted)
    firsts = set()
    for e in range(20):
        sampler.set_epoch(e)
        firsts.add(GROUPS[next(iter(sampler))[0]])
    assert len(firsts) > 1


@pytest.mark.parametrize("replicas", [2, 3])
def test_ranks_get_disjoint_round_robin_shares_of_the_epoch(replicas):
    single = GroupedBatchSampler(GROUPS, 4, seed=1).global_batches()
    shards = [list(GroupedBatchSampler(GROUPS, 4, seed=1, num_replicas=replicas, rank=r)) for r in range(replicas)]
    n = len(single) // replicas
    assert all(len(s) == n for s in shards)
    for r, s in enumerate(shards):
        assert s == single[r::replicas][:n]


def test_dataloader_and_errors():
    data = [{"x": torch.tensor([float(i)]), "bone": g} for i, g in enumerate(GROUPS)]
    loader = DataLoader(data, batch_sampler=GroupedBatchSampler([d["bone"] for d in data], 4))
    for batch in loader:
        assert len(set(batch["bone"])) == 1 and batch["x"].shape == (4, 1)
    with pytest.raises(ValueError, match="batch_size"):
        GroupedBatchSampler(GROUPS, 0)
    with pytest.raises(ValueError, match="groups is empty"):
        GroupedBatchSampler([], 4)
    with pytest.raises(ValueError, match="fewer than num_replicas"):
        GroupedBatchSampler(GROUPS, 16, num_replicas=3, rank=0)
    with pytest.raises(ValueError, match="rank"):
        GroupedBatchSampler(GROUPS, 4, num_replicas=2, rank=2)


def test_ssl_batch_sampler_setting():
    from monai_osteo.bundle.hand_osteo import ssl_batch_sampler

    records = [{"bone": g} for g in GROUPS]
    assert ssl_batch_sampler(records, None, 4) is None
    sampler = ssl_batch_sampler(records, "bone", 4, seed=2)
    assert list(sampler) == list(GroupedBatchSampler(GROUPS, 4, seed=2))
    with pytest.raises(ValueError, match="ssl_batch_grouping"):
        ssl_batch_sampler(records, "subject", 4)
    with pytest.raises(ValueError, match="DistributedSampler"):
        ssl_batch_sampler(records, "bone", 4, sampler=object())


def test_the_ssl_trainer_reshuffles_the_batch_sampler_every_epoch():
    """MultiViewSSLTrainer calls set_epoch on its loader's batch sampler at every epoch start: the epochs see
    different batches (MONAI's Workflow only does this for a DistributedSampler)."""
    from ignite.engine import Events

    from monai_osteo.engines import MultiViewSSLTrainer
    from monai_osteo.losses import MultiCropSSLLoss
    from monai_osteo.networks.nets import SSLNetwork

    data = [{"image_global": [torch.rand(1, 16, 16), torch.rand(1, 16, 16)], "image_local": [], "label": -1,
             "i": i} for i in range(len(GROUPS))]
    sampler = GroupedBatchSampler(GROUPS, 4, seed=0)
    loader = DataLoader(data, batch_sampler=sampler)
    torch.manual_seed(0)
    net = SSLNetwork(spatial_dims=2, in_channels=1, method="simclr", backbone="resnet18", hidden_dim=16,
                     projection_dim=8)
    trainer = MultiViewSSLTrainer(device=torch.device("cpu"), max_epochs=2, train_data_loader=loader, network=net,
                                  optimizer=torch.optim.SGD(net.parameters(), lr=0.0),
                                  loss_function=MultiCropSSLLoss(method="simclr", num_global=2))
    seen: list[list[list[int]]] = [[], []]
    trainer.add_event_handler(Events.ITERATION_COMPLETED,
                              lambda e: seen[e.state.epoch - 1].append(e.state.batch["i"].tolist()))
    trainer.run()
    expected = []
    for epoch in (1, 2):  # ignite's epochs count from 1, as MONAI passes them to a DistributedSampler
        sampler.set_epoch(epoch)
        expected.append(list(sampler))
    assert seen == expected and seen[0] != seen[1]
