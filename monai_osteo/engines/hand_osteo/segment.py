"""Segment one radiograph with the trained network at its reduced size: class probabilities and uncertainty."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from monai_osteo.networks.nets import MultiDecoderOTUNet
from monai_osteo.transforms.letterbox import Letterbox, letterbox_window

__all__ = ["letterbox", "segment_radiograph"]


@torch.no_grad()
def segment_radiograph(network: torch.nn.Module, image: torch.Tensor, spatial_size: Sequence[int],
                       uncertainty: bool = False, num_samples: int | None = None,
                       seed: int | None = None) -> dict[str, torch.Tensor]:
    """Mixture-mean class probabilities of a (1, H, W) radiograph, computed at ``spatial_size``.

    Args:
        network: a :class:`MultiDecoderOTUNet` (or any module mapping (B, 1, h, w) to (B, C, h, w) probabilities,
            e.g. the exported mean path).
        image: (1, H, W) radiograph in [0, 1], on the network's device.
        spatial_size: (h, w) the network was trained at. A radiograph of another aspect ratio is zero-padded
            (centred) to it first, and the outputs are cropped back to the radiograph's window.
        uncertainty: also return the per-pixel predictive entropy of the mixture mean divided by log C (in
            [0, 1]) and, for a :class:`MultiDecoderOTUNet`, its between-hypotheses part (mutual information).
        num_samples: hypotheses per decoder for the uncertainty (default: the network's).
        seed: draw the hypotheses' latent samples from this seed, leaving the caller's random state (CPU, and the
            image's CUDA device) as it was: the result then depends only on the image and the network. None: draw
            from the global random state.

    Returns:
        ``{"prob": (C, h', w')}`` (h', w' = the radiograph's window at the reduced size) plus ``"entropy"`` and
        ``"mutual_information"`` (h', w') with ``uncertainty``.
    """
    if image.ndim != 3 or image.shape[0] != 1:
        raise ValueError(f"image must be a (1, H, W) radiograph, got shape {tuple(image.shape)}.")
    size = tuple(int(s) for s in spatial_size)
    boxed = Letterbox(size, mode="area")(image.float())  # the transform training and the patch stage use
    window = letterbox_window(boxed)
    x = boxed.as_tensor()[None]
    if uncertainty and isinstance(network, MultiDecoderOTUNet):
        kwargs = {} if num_samples is None else {"num_samples": num_samples}
        if seed is None:
            out = network(x, with_uncertainty=True, **kwargs)
        else:
            with torch.random.fork_rng(devices=[image.device] if image.is_cuda else []):
                torch.manual_seed(seed)
                out = network(x, with_uncertainty=True, **kwargs)
        res = {"prob": out["mean_prob"][0], "entropy": out["uncertainty"][0, 0],
               "mutual_information": out["mutual_information"][0, 0]}
    else:
        fn = network.predict_mean if isinstance(network, MultiDecoderOTUNet) else network
        res = {"prob": fn(x)[0]}
        if uncertainty:
            p = res["prob"]
            res["entropy"] = -(p.clamp_min(1e-12).log() * p).sum(0) / math.log(p.shape[0])
    r0, r1, c0, c1 = (round(v) for v in (window[0] * size[0], window[1] * size[0], window[2] * size[1],
                                         window[3] * size[1]))
    return {k: v[..., r0:r1, c0:c1] for k, v in res.items()}


def letterbox(image: torch.Tensor, ratio: float) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
    """Zero-pad a (C, H, W) image, centred, to the height/width ``ratio`` the network was trained at.

    Returns:
        the padded image and the image's window in it as fractions (top, bottom, left, right); no padding when the
        ratio already matches within one pixel.
    """
    h, w = image.shape[-2:]
    if abs(h / w - ratio) * w <= 1.0:
        return image, (0.0, 1.0, 0.0, 1.0)
    hp, wp = (h, round(h / ratio)) if h / w > ratio else (round(w * ratio), w)
    top, left = (hp - h) // 2, (wp - w) // 2
    padded = F.pad(image, (left, wp - w - left, top, hp - h - top))
    return padded, (top / hp, (top + h) / hp, left / wp, (left + w) / wp)
