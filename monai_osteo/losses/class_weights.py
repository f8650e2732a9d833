"""Median-frequency class weights for a weighted cross-entropy.

``w_c = median_k(freq_k) / freq_c``. Eigen & Fergus define ``freq_c`` as the pixels of class c divided by the total
pixels of the images in which c is present (``frequency="present"``, the default). The S4MI/SSL4MIS code
(``reverse_weight(calculate_weights(...))``) states that definition in its docstring but divides by all pixels of all
masks (``frequency="global"``); the two agree when every class occurs in every mask (e.g. binary masks that all
contain foreground). With a weighted-mean cross-entropy (``torch.nn.CrossEntropyLoss(weight=w)``) only the ratios of
the weights matter.

- [0] Eigen & Fergus, 2015, Predicting Depth, Surface Normals and Semantic Labels with a Common Multi-Scale
  Convolutional Architecture (ICCV), §4.3.
- [1] Singh et al., 2024, Shifting to machine supervision (Sci. Rep.); S4MI ``utils/losses.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch

__all__ = ["median_frequency_weights"]


def _read(mask, num_classes: int) -> np.ndarray:
    if isinstance(mask, (str, os.PathLike)):
        from PIL import Image

        with Image.open(mask) as img:
            arr = np.asarray(img.convert("L") if img.mode in ("RGB", "RGBA", "LA") else img)
    else:
        arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if num_classes == 2:
        return (arr > 0).astype(np.int64)
    if not np.all(np.equal(np.mod(arr, 1), 0)) or arr.min(initial=0) < 0 or arr.max(initial=0) >= num_classes:
        raise ValueError(f"mask values must be integers in [0, {num_classes}), got range [{arr.min()}, {arr.max()}]; "
                         "map the label values to class indices first (or set num_classes=2 for mask > 0).")
    return arr.astype(np.int64)


def median_frequency_weights(labels: Iterable, num_classes: int, frequency: str = "present") -> torch.Tensor:
    """Median-frequency balancing weights of ``num_classes`` classes.

    Args:
        labels: label maps, each a numpy array / tensor of any shape or the path of a mask image (PNG, read with PIL).
            With ``num_classes == 2`` every value > 0 counts as class 1 (0/255 masks); otherwise the values are the
            class indices.
        num_classes: number of classes K.
        frequency: ``"present"`` (Eigen & Fergus: class pixels / pixels of the masks containing the class) or
            ``"global"`` (S4MI code: class pixels / all pixels).

    Returns:
        float32 tensor (K,) of weights, e.g. ``DiceCELoss(weight=...)`` / ``CrossEntropyLoss(weight=...)``.
    """
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    if frequency not in ("present", "global"):
        raise ValueError(f"frequency must be 'present' or 'global', got {frequency!r}.")
    counts = np.zeros(num_classes, dtype=np.float64)
    present_pixels = np.zeros(num_classes, dtype=np.float64)
    total, n = 0.0, 0
    for mask in labels:
        arr = _read(mask, int(num_classes))
        c = np.bincount(arr.ravel(), minlength=num_classes).astype(np.float64)
        counts += c
        present_pixels += (c > 0) * arr.size
        total += arr.size
        n += 1
    if n == 0:
        raise ValueError("labels must contain at least one mask, got none; pass the training label maps.")
    missing = np.flatnonzero(counts == 0).tolist()
    if missing:
        raise ValueError(f"classes {missing} never appear in the {n} masks; check num_classes and the mask values, "
                         "include masks that contain them, or give the weights explicitly.")
    freq = counts / (present_pixels if frequency == "present" else total)
    return torch.as_tensor(np.median(freq) / freq, dtype=torch.float32)
