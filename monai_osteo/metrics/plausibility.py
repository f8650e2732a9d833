"""Input plausibility: could this image be a projection radiograph of a hand at all?

The first, cheapest gate of the screening, before any network looks at the image. Its rules are generic to
projection radiography, not learned from the phantom (the phantom's size or bit depth would reject a user's real
radiographs), and each is a plain fact about the file:

- DICOM Modality, when present, is a projection-radiography modality (CR, DX, RG by default; CT, MR, US, ... are
  refused); DICOM BodyPartExamined, when present, names a hand, wrist or upper extremity. Tags are only ever
  grounds for refusal, never for acceptance: the later gates judge the pixels whatever the tags say.
- A gray image: a colour photograph (``chroma`` of the stored RGB above ``max_chroma``) is refused.
- Size and shape: the short side at least ``min_side`` pixels, the aspect ratio at most ``max_aspect``.
- Dynamic range: at least ``min_gray_levels`` distinct gray levels (a binary or posterised picture is not a
  radiograph), a 1st-99th percentile range of at least ``min_contrast`` of the full range, and no single gray level
  covering more than ``max_mode_fraction`` of the image (blank or mostly padded).

The meta keys are those of :class:`~monai_osteo.data.LoadRadiograph` (``modality``, ``body_part``, ``chroma``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["DEFAULT_BODY_PARTS", "DEFAULT_MODALITIES", "input_plausibility"]

#: DICOM Modality values of projection radiographs (PS3.3 C.7.3.1.1.1)
DEFAULT_MODALITIES = ("CR", "DX", "RG", "DR")
#: BodyPartExamined values (spaces, hyphens and underscores removed, upper case) of a hand/wrist radiograph
DEFAULT_BODY_PARTS = ("HAND", "WRIST", "HANDWRIST", "FINGER", "FINGERS", "EXTREMITY", "UPPEREXTREMITY", "UPPEREXTREM",
                      "ARM", "FOREARM", "CARPUS", "METACARPUS", "BONEAGE")


def _norm(value: object) -> str:
    return "".join(ch for ch in str(value or "").upper() if ch.isalnum())


def input_plausibility(image: torch.Tensor | np.ndarray, meta: Mapping | None = None,
                       modalities: Sequence[str] = DEFAULT_MODALITIES, body_parts: Sequence[str] = DEFAULT_BODY_PARTS,
                       max_chroma: float = 0.02, min_side: int = 128, max_aspect: float = 3.0,
                       min_gray_levels: int = 64, min_contrast: float = 0.1,
                       max_mode_fraction: float = 0.8) -> list[str]:
    """Reasons why ``image`` is not a plausible hand radiograph (empty list: plausible).

    Args:
        image: (H, W) or (1, H, W) image as :class:`~monai_osteo.data.LoadRadiograph` returns it (in [0, 1]).
        meta: its metadata (``modality``, ``body_part``, ``chroma``); missing keys skip their check.
        modalities: accepted DICOM Modality values (an empty Modality always passes).
        body_parts: accepted BodyPartExamined values, compared without spaces/punctuation, case-insensitively (an
            empty one always passes).
        max_chroma: largest colour content of the stored image still treated as gray.
        min_side: shortest accepted image side, pixels.
        max_aspect: largest accepted long/short side ratio.
        min_gray_levels: fewest distinct gray levels.
        min_contrast: smallest 1st-99th percentile range, as a fraction of the image's value range.
        max_mode_fraction: largest fraction of pixels sharing one gray level.

    Returns:
        Plain-language reasons, one per failed rule.
    """
    x = torch.as_tensor(image).detach()
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"image must be (H, W) or (1, H, W), got shape {tuple(x.shape)}.")
    meta = meta or {}
    reasons = []
    modality = str(meta.get("modality", "") or "").strip().upper()
    if modality and modality not in {m.upper() for m in modalities}:
        reasons.append(f"DICOM modality {modality} is not a projection radiograph (accepted: {', '.join(modalities)})")
    body = _norm(meta.get("body_part", ""))
    if body and body not in {_norm(b) for b in body_parts}:
        reasons.append(f"DICOM body part {str(meta.get('body_part')).strip()} is not a hand or wrist")
    chroma = float(meta.get("chroma", 0.0) or 0.0)
    if chroma > max_chroma:
        reasons.append(f"colour image (chroma {chroma:.3f} > {max_chroma}): radiographs are gray")
    h, w = (int(s_) for s_ in x.shape)
    if min(h, w) < min_side:
        reasons.append(f"too small ({h} x {w} pixels; at least {min_side} on the short side)")
    if max(h, w) > max_aspect * min(h, w):
        reasons.append(f"implausible shape ({h} x {w} pixels, aspect ratio above {max_aspect:g})")
    step = max(1, int(np.ceil(np.sqrt(x.numel() / 262_144))))  # a regular grid of <= 512 x 512 pixels is plenty
    values = x[::step, ::step].flatten().float()
    levels, counts = torch.unique(values, return_counts=True)
    if levels.numel() < min_gray_levels:
        reasons.append(f"only {levels.numel()} gray levels (at least {min_gray_levels}): not a radiograph's range")
    span = float(values.max() - values.min())
    if span > 0:
        lo, hi = (float(q) for q in torch.quantile(values, torch.tensor([0.01, 0.99], dtype=values.dtype)))
        if (hi - lo) / span < min_contrast:
            reasons.append(f"almost no contrast (1st-99th percentile range {(hi - lo) / span:.3f} of the full range)")
    mode = float(counts.max()) / values.numel()
    if mode > max_mode_fraction:
        reasons.append(f"{100 * mode:.0f} % of the image is one gray level: blank or mostly padding")
    return reasons
