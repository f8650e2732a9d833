"""The two reference rows every MedSASS table carries, as networks an evaluator runs like any model.

- all-foreground: every pixel foreground (its IoU is the foreground fraction of the image);
- Otsu-direct: the pseudo-label itself (the per-image threshold), the thing a zero-label MedSASS U-Net learns to
  imitate; a zero-label model that does not beat it has learned nothing beyond Otsu.

Writing them as modules that return logits (±``logit``) lets ``evaluate.json`` score them with the same
preprocessing, post-processing and metric handlers as the trained models, so the rows are comparable by
construction.

- [0] Singh & Cirrone, MedSASS, §4 (Tables 1-4); specs/wave2.md §5.2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from monai_osteo.engines.medsass.pseudo_labels import make_pseudo_masker

__all__ = ["AllForegroundPredictor", "PseudoMaskPredictor"]


class AllForegroundPredictor(torch.nn.Module):
    """(B, C, *spatial) -> (B, 1, *spatial) logits ``+logit`` everywhere (sigmoid ~1: all foreground)."""

    def __init__(self, logit: float = 20.0) -> None:
        super().__init__()
        self.logit = float(logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_full((x.shape[0], 1, *x.shape[2:]), self.logit)


class PseudoMaskPredictor(torch.nn.Module):
    """(B, C, *spatial) -> (B, 1, *spatial) logits ``±logit`` of the per-image threshold mask (Otsu-direct).

    Args:
        method, foreground, channels, threshold_kwargs: as
            :class:`~monai_osteo.engines.medsass.OtsuPseudoLabelBatch` (use the same values as the pre-training).
        logit: magnitude of the returned logits.
    """

    def __init__(self, method: str = "otsu", foreground: str = "bright", channels: Sequence[int] | None = None,
                 threshold_kwargs: Mapping | None = None, logit: float = 20.0) -> None:
        super().__init__()
        self.otsu = make_pseudo_masker(method, foreground, threshold_kwargs)
        self.channels = None if channels is None else [int(c) for c in channels]
        self.logit = float(logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source = x if self.channels is None else x[:, self.channels]
        return (self.otsu(source.detach()).to(x.dtype) * 2 - 1) * self.logit
