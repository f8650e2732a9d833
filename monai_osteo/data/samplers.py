"""Seeded batch samplers: two-stream batches (labelled then unlabelled indices) and single-group batches.

``GroupedBatchSampler`` (hand_osteo's ``ssl_batch_grouping``) is documented on the class. The rest of this text is
about ``TwoStreamBatchSampler``: every batch = labelled (primary) indices followed by unlabelled (secondary) indices.

Semi-supervised cross-teaching (S4MI, spec §4.3) trains on batches of ``labeled_bs`` labelled images followed by
unlabelled ones; the trainer slices ``[:labeled_bs]`` / ``[labeled_bs:]``, so the order inside a batch matters.
Neither MONAI nor torch has such a sampler (``DistributedSampler``/``BatchSampler`` draw from one stream), so this
re-implements SSL4MIS's ``TwoStreamBatchSampler`` with three changes: it is seeded per ``(seed, epoch)`` instead of
drawing from the global numpy state, an empty secondary stream is an error instead of a hang, and it shards batches
across distributed ranks.

- [0] Tarvainen & Valpola, 2017, Mean teachers are better role models (``TwoStreamBatchSampler``, mean-teacher repo).
- [1] Luo, 2020, SSL4MIS, github.com/HiLab-git/SSL4MIS, ``code/dataloaders/dataset.py`` (``iterate_once``,
  ``iterate_eternally``, ``grouper``).
- [2] Singh et al., 2024, Shifting to machine supervision (S4MI), ``train_CT_between_cnn_transformer_2D.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["GroupedBatchSampler", "TwoStreamBatchSampler"]


def _ranks(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """(num_replicas, rank), defaulting to ``torch.distributed``'s when initialised, else (1, 0); validated."""
    if num_replicas is None:
        num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be in [0, num_replicas) with num_replicas >= 1, got rank={rank!r}, "
                         f"num_replicas={num_replicas!r}.")
    return int(num_replicas), int(rank)


class TwoStreamBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size - secondary_batch_size`` primary indices then ``secondary_batch_size`` secondary ones.

    One epoch is one pass over a seeded permutation of the primary indices (the incomplete tail is dropped); the
    secondary stream runs through successive seeded permutations of the secondary indices for as long as the primary
    pass lasts, so it may be shorter or longer than the primary list (an index may repeat inside a batch when the
    secondary list is shorter than ``secondary_batch_size``). Use as ``DataLoader(dataset, batch_sampler=sampler)``
    and call :meth:`set_epoch` before each epoch, as with ``DistributedSampler``.

    With several ranks the epoch's batch sequence (identical on every rank, being seeded) is dealt round-robin:
    rank ``r`` gets batches ``r, r + R, r + 2R, ...``, truncated so that every rank has ``len(self)`` batches.

    Args:
        primary_indices: dataset indices of the labelled items (one pass per epoch).
        secondary_indices: dataset indices of the unlabelled items (cycled). May be empty only when
            ``secondary_batch_size`` is 0.
        batch_size: total batch size.
        secondary_batch_size: secondary items per batch (SSL4MIS: ``batch_size - labeled_bs``), in ``[0, batch_size)``.
        seed: seed of the permutations; the same on all ranks.
        num_replicas: number of ranks; default ``torch.distributed`` world size when initialised, else 1.
        rank: this rank; default ``torch.distributed`` rank when initialised, else 0.
    """

    def __init__(self, primary_indices: Sequence[int], secondary_indices: Sequence[int], batch_size: int,
                 secondary_batch_size: int, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        self.primary_indices = [int(i) for i in primary_indices]
        self.secondary_indices = [int(i) for i in secondary_indices]
        if not 0 <= secondary_batch_size < batch_size:
            raise ValueError(f"secondary_batch_size must be in [0, batch_size={batch_size}), got "
                             f"{secondary_batch_size!r}: keep at least one primary (labelled) item per batch.")
        self.batch_size, self.secondary_batch_size = int(batch_size), int(secondary_batch_size)
        self.primary_batch_size = self.batch_size - self.secondary_batch_size
        if secondary_batch_size > 0 and not self.secondary_indices:
            raise ValueError(f"secondary_indices is empty but secondary_batch_size={secondary_batch_size}: pass at "
                             "least one secondary (unlabelled) index (at 100% labels, pass the training indices, whose "
                             "labels the unlabelled slot ignores) or set secondary_batch_size=0.")
        if len(self.primary_indices) < self.primary_batch_size:
            raise ValueError(f"primary_indices must hold at least one primary batch ({self.primary_batch_size} = "
                             f"batch_size - secondary_batch_size), got {len(self.primary_indices)}: lower batch_size "
                             "or raise the labelled fraction.")
        self.num_replicas, self.rank = _ranks(num_replicas, rank)
        self.num_global_batches = len(self.primary_indices) // self.primary_batch_size
        if self.num_global_batches < self.num_replicas:
            raise ValueError(f"the primary indices make {self.num_global_batches} batch(es) per epoch, fewer than "
                             f"num_replicas={self.num_replicas}: some ranks would get no batch; lower batch_size or "
                             "the number of ranks.")
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the permutations of ``epoch`` (call before each epoch)."""
        self.epoch = int(epoch)

    def global_batches(self) -> list[list[int]]:
        """All batches of the current epoch before sharding (the same on every rank)."""
        rng_p = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 0]))
        rng_s = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 1]))
        primary = np.asarray(self.primary_indices)[rng_p.permutation(len(self.primary_indices))]
        n, k = self.num_global_batches, self.secondary_batch_size
        secondary: list[int] = []
        if k:
            pool = np.asarray(self.secondary_indices)
            while len(secondary) < n * k:  # SSL4MIS iterate_eternally: successive permutations
                secondary.extend(pool[rng_s.permutation(len(pool))].tolist())
        pb = self.primary_batch_size
        return [primary[b * pb:(b + 1) * pb].tolist() + secondary[b * k:(b + 1) * k] for b in range(n)]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.global_batches()[self.rank::self.num_replicas]
        return iter(batches[:len(self)])

    def __len__(self) -> int:
        return self.num_global_batches // self.num_replicas


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches whose items all share one group (e.g. the same bone), shuffled within and across groups every epoch.

    Contrastive SSL on bone patches with batches mixing ulna, radius and metacarpals can tell most views apart by
    bone type and outline alone; batches of a single bone make every negative the same bone of another subject
    (hard negatives in the sense of [0]), so the features must separate what differs between subjects of that bone.
    One epoch: each group's indices are permuted with a generator seeded by ``(seed, epoch, group)``, cut into
    batches of ``batch_size`` (a group's incomplete tail is dropped when ``drop_last``), and the batches of all groups
    are permuted together (seeded by ``(seed, epoch)``). Neither torch nor MONAI has such a sampler (torchvision's
    ``GroupedBatchSampler`` lives in its detection reference scripts, not in the package, and is unseeded); the
    seeding, ``set_epoch`` and rank sharding follow :class:`TwoStreamBatchSampler`. Use as
    ``DataLoader(dataset, batch_sampler=sampler)``; :class:`~monai_osteo.engines.MultiViewSSLTrainer` calls
    :meth:`set_epoch` at every epoch start.

    - [0] Robinson et al., 2021, Contrastive learning with hard negative samples, ICLR.

    Args:
        groups: one hashable group key per dataset item (e.g. ``[r["bone"] for r in records]``).
        batch_size: items per batch.
        drop_last: drop each group's incomplete last batch (default True, as SimCLR's loaders do).
        seed: seed of the permutations; the same on all ranks.
        num_replicas, rank: as in :class:`TwoStreamBatchSampler` (round-robin dealing of the epoch's batches).
    """

    def __init__(self, groups: Sequence, batch_size: int, drop_last: bool = True, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        self.batch_size, self.drop_last = int(batch_size), bool(drop_last)
        keys: dict = {}
        for i, g in enumerate(groups):
            keys.setdefault(g, []).append(i)
        self.groups = [keys[g] for g in sorted(keys, key=str)]
        if not self.groups:
            raise ValueError("groups is empty: pass one group key per dataset item.")
        self.num_replicas, self.rank = _ranks(num_replicas, rank)
        per_group = [(len(g) // self.batch_size) if self.drop_last else -(-len(g) // self.batch_size)
                     for g in self.groups]
        self.num_global_batches = sum(per_group)
        if self.num_global_batches < self.num_replicas:
            sizes = {str(k): len(v) for k, v in keys.items()}
            raise ValueError(f"the groups make {self.num_global_batches} batch(es) of {self.batch_size} per epoch "
                             f"(group sizes {sizes}), fewer than num_replicas={self.num_replicas}: lower batch_size.")
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the permutations of ``epoch`` (call before each epoch)."""
        self.epoch = int(epoch)

    def global_batches(self) -> list[list[int]]:
        """All batches of the current epoch before sharding (the same on every rank)."""
        batches = []
        for g, idx in enumerate(self.groups):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, g + 1]))
            perm = np.asarray(idx)[rng.permutation(len(idx))].tolist()
            stop = len(perm) - len(perm) % self.batch_size if self.drop_last else len(perm)
            batches.extend(perm[b:b + self.batch_size] for b in range(0, stop, self.batch_size))
        order = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 0])).permutation(len(batches))
        return [batches[i] for i in order]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.global_batches()[self.rank::self.num_replicas]
        return iter(batches[:len(self)])

    def __len__(self) -> int:
        return self.num_global_batches // self.num_replicas
