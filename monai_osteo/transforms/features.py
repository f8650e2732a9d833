"""Features of a frozen network, computed in a transform so that a ``CacheDataset`` computes them once.

The linear probe trains for many epochs on features of a frozen encoder; as a deterministic transform in a
``CacheDataset`` the encoder runs once per patch when the dataset is built, and the probe's standard MONAI
trainer then iterates over cached feature vectors. MONAI has no transform that applies a network.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

__all__ = ["FrozenFeatures", "FrozenFeaturesd"]


class FrozenFeatures(Transform):
    """(C, *spatial) image -> (F,) features of ``network`` in eval mode, without gradients, on CPU.

    Args:
        network: module mapping (B, C, *spatial) to (B, F).
        device: where the network runs (it is moved there).
    """

    def __init__(self, network: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        # a plain tensor: MetaTensor's per-operation metadata handling costs more than a small network's convolutions
        x = convert_to_tensor(img, dtype=torch.float32, track_meta=False)[None].to(self.device)
        self.network.eval()
        return self.network(x)[0].float().cpu()


class FrozenFeaturesd(MapTransform):
    """Dictionary twin of :class:`FrozenFeatures` (each key replaced by its feature vector)."""

    def __init__(self, keys: KeysCollection, network: torch.nn.Module, device: str | torch.device = "cpu",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.features = FrozenFeatures(network, device)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.features(d[key])
        return d
