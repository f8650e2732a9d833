"""``FrozenFeatureDataset``: the items of a dataset with an image replaced by a frozen network's features, computed
once, in batches, when the dataset is built.

A linear probe trains for many epochs on the features of a frozen encoder, so the encoder should run once per patch.
MONAI's ``CacheDataset`` with :class:`~monai_osteo.transforms.FrozenFeaturesd` as its last transform does that, but
a transform sees one item: the encoder then runs batch-1 convolutions on ``MetaTensor`` inputs, and on the quick
preset's 2,695 training and validation patches (ResNet-18, 128 px, 2 CPU threads) the probe stage spent 52 s building
its cache, where the same features computed 32 patches at a time take about 17 s. MONAI has no dataset that applies a
network to its items in batches, hence this class.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch
from monai.data import Dataset
from monai.utils import convert_to_tensor
from tqdm import tqdm

__all__ = ["FrozenFeatureDataset"]


class FrozenFeatureDataset(Dataset):
    """Dataset of ``data`` whose ``key`` holds ``network``'s (F,) features of the preprocessed image.

    Each item of ``data`` (a dict) goes through ``transform`` (deterministic preprocessing: load, normalise, resize;
    applied once, so nothing random belongs there), the images are stacked ``batch_size`` at a time and encoded by
    ``network`` in eval mode without gradients, and the item is kept with ``key`` replaced by its feature vector
    (float32, CPU; the other keys as the transform left them). Items are returned as stored; ``Dataset``'s
    ``transform`` is not used afterwards.

    Args:
        data: the items (dicts with ``key``).
        transform: deterministic preprocessing of one item (e.g. a MONAI ``Compose`` of dictionary transforms).
        network: module mapping (B, C, *spatial) to (B, F): the frozen encoder. Its train/eval mode is restored.
        key: the image key.
        batch_size: images encoded together.
        device: where the network runs (it is moved there); features are returned on the CPU.
        progress: show a progress bar.

    Raises:
        ValueError: ``batch_size`` < 1, or the network does not map a batch to one vector per image.
    """

    def __init__(self, data: Sequence[dict], transform: Callable | None, network: torch.nn.Module,
                 key: Hashable = "image", batch_size: int = 32, device: str | torch.device = "cpu",
                 progress: bool = True) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
        items = list(data)
        super().__init__(data=self._encode(items, transform, network, key, int(batch_size), torch.device(device),
                                           progress), transform=None)

    @staticmethod
    @torch.no_grad()
    def _encode(items, transform, network, key, batch_size, device, progress) -> list[dict]:
        was_training = network.training
        network = network.to(device).eval()
        out: list[dict] = []
        try:
            with tqdm(total=len(items), desc="frozen features", unit="image", disable=not progress,
                      leave=False) as bar:
                for start in range(0, len(items), batch_size):
                    batch = [dict(transform(d)) if transform is not None else dict(d)
                             for d in items[start:start + batch_size]]
                    x = torch.stack([convert_to_tensor(d[key], dtype=torch.float32, track_meta=False)
                                     for d in batch]).to(device)
                    feats = network(x)
                    if feats.ndim != 2 or feats.shape[0] != len(batch):
                        raise ValueError(f"network must map a (B, C, *spatial) batch to (B, F) features, got "
                                         f"{tuple(feats.shape)} for a batch of {len(batch)}.")
                    feats = feats.float().cpu()
                    for d, f in zip(batch, feats):
                        d[key] = f.clone()
                        out.append(d)
                    bar.update(len(batch))
        finally:
            network.train(was_training)
        return out
