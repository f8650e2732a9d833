"""Datasets and samplers over the bone-patch cache, filled by the patch stage after the loaders are built.

MONAI's bundle workflow builds the trainer (and so its ``DataLoader``) when ``check_properties`` runs, before
any stage has run; the patch records are therefore read when the data are first used, not when built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from monai.transforms import MapTransform, apply_transform

__all__ = ["BonePatchDataset", "LoadBonePatchd", "ShuffleSampler"]


class LoadBonePatchd(MapTransform):
    """Load the cached (1, s, s) patch at ``data[key]`` (a .npy path) as a float32 tensor in [0, 1]."""

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            arr = np.load(d[key])
            if arr.ndim != 3 or arr.shape[0] != 1:
                raise ValueError(f"{d[key]}: a bone patch must be (1, s, s), got {arr.shape}; rebuild the patch "
                                 "cache (delete its folder).")
            d[key] = torch.from_numpy(arr.astype(np.float32))
        return d


class BonePatchDataset(torch.utils.data.Dataset):
    """Patch records of a :class:`~monai_osteo.engines.hand_osteo.patch_stage.BonePatchStage`, read on first use.

    Each item is ``{"image": path, "label": int, "bone", "subject_id", ...}`` passed through ``transform``.

    Args:
        patches: the patch stage.
        role: "ssl" (pretraining patches) or "probe" (labelled patches).
        splits: the splits to take (default all).
        transform: MONAI transform applied to each record.
        labels: keep the labels (SupCon) or set them all to -1 (the other methods never see labels).
    """

    def __init__(self, patches, role: str = "ssl", splits: Sequence[str] | None = None,
                 transform: Callable | None = None, labels: bool = True) -> None:
        if role not in ("ssl", "probe"):
            raise ValueError(f"role must be 'ssl' or 'probe', got {role!r}.")
        self.patches, self.role = patches, role
        self.splits = None if splits is None else tuple(splits)
        self.transform, self.labels = transform, labels
        self._data: list[dict] | None = None
        self._stamp = None

    def _index_stamp(self):
        index = getattr(self.patches, "index_file", None)
        return index.stat().st_mtime_ns if index is not None and index.is_file() else None

    @property
    def data(self) -> list[dict]:
        stamp = self._index_stamp()
        if not self._data or stamp != self._stamp:  # first use, or the patch stage re-ran
            self._stamp = stamp
            records = self.patches.records(self.role, self.splits)
            self._data = [dict(r, image=r["patch"], label=r["label"] if self.labels else -1) for r in records]
        return self._data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        item = self.data[index]
        return apply_transform(self.transform, item) if self.transform is not None else item


class ShuffleSampler(torch.utils.data.Sampler):
    """Random order each epoch, sized when iterated (so the dataset may be filled after the loader is built).

    Under ``torch.distributed`` each rank takes every ``num_replicas``-th index of one shared permutation
    (``DistributedSampler``'s split, with padding to equal length).

    Args:
        dataset: any sized dataset.
        seed: seed of the permutations (epoch ``e`` uses ``seed + e``).
        shuffle: False keeps the dataset order.
        num_replicas, rank: default: the process group's, or 1 and 0.
    """

    def __init__(self, dataset, seed: int = 0, shuffle: bool = True, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        self.dataset, self.seed, self.shuffle = dataset, int(seed), shuffle
        ddp = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if ddp else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if ddp else 0)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        self.epoch += 1
        total = len(self) * self.num_replicas
        while n and len(order) < total:  # pad by repeating, as DistributedSampler does
            order += order[: total - len(order)]
        return iter(order[self.rank:total:self.num_replicas])
