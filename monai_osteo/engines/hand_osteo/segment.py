"""Segment one radiograph with the trained network at its reduced size: class probabilities and uncertainty."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from monai_osteo.networks.nets import MultiDecoderOTUNet

__all__ = ["segment_radiograph"]


@torch.no_grad()
def segment_radiograph(network: torch.nn.Module, image: torch.Tensor, spatial_size: Sequence[int],
                       uncertainty: bool = False, num_samples: int | None = None) -> dict[str, torch.Tensor]:
    """Mixture-mean class probabilities of a (1, H, W) radiograph, computed at ``spatial_size``.

    Args:
        network: a :class:`MultiDecoderOTUNet` (or any module mapping (B, 1, h, w) to (B, C, h, w) probabilities,
            e.g. the exported mean path).
        image: (1, H, W) radiograph in [0, 1], on the network's device.
        spatial_size: (h, w) the network was trained at (same aspect ratio as the radiograph, roughly).
        uncertainty: also return the per-pixel predictive entropy of the mixture mean divided by log C (in
            [0, 1]) and, for a :class:`MultiDecoderOTUNet`, its between-hypotheses part (mutual information).
        num_samples: hypotheses per decoder for the uncertainty (default: the network's).

    Returns:
        ``{"prob": (C, h, w)}`` plus ``"entropy"`` and ``"mutual_information"`` (h, w) with ``uncertainty``.
    """
    if image.ndim != 3 or image.shape[0] != 1:
        raise ValueError(f"image must be a (1, H, W) radiograph, got shape {tuple(image.shape)}.")
    x = F.interpolate(image[None].float(), size=tuple(int(s) for s in spatial_size), mode="area")
    if uncertainty and isinstance(network, MultiDecoderOTUNet):
        kwargs = {} if num_samples is None else {"num_samples": num_samples}
        out = network(x, with_uncertainty=True, **kwargs)
        return {"prob": out["mean_prob"][0], "entropy": out["uncertainty"][0, 0],
                "mutual_information": out["mutual_information"][0, 0]}
    fn = network.predict_mean if isinstance(network, MultiDecoderOTUNet) else network
    prob = fn(x)[0]
    res = {"prob": prob}
    if uncertainty:
        res["entropy"] = -(prob.clamp_min(1e-12).log() * prob).sum(0) / math.log(prob.shape[0])
    return res
