"""Figures people look at, written as PNG atomically (temporary file, then rename)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monai_osteo.io import atomic_write

__all__ = ["BONE_COLORS", "overlay_labels", "save_roc_png", "save_segmentation_png"]


def _save_atomic(fig, path: Path) -> Path:
    """Write ``fig`` (a ``matplotlib.figure.Figure``) as PNG to a temporary file beside ``path``, then rename.

    Figures are built with ``Figure`` rather than ``pyplot``: no global backend switch (a notebook keeps showing
    its own figures inline) and nothing to close.
    """
    return atomic_write(path, lambda f: fig.savefig(f, format="png"))


def save_roc_png(path: str | os.PathLike, curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                 title: str = "ROC") -> Path:
    """Plot one ROC curve per entry ``name -> (labels, scores)`` with its AUC in the legend."""
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_auc_score, roc_curve

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(4.5, 4.5), dpi=120)
    ax = fig.subplots()
    for name, (y, s) in curves.items():
        y, s = np.asarray(y), np.asarray(s)
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.2f}, n={len(y)})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save_atomic(fig, path)


#: one colour per label (0 background transparent; 1-7 ulna, radius, M1-M5)
BONE_COLORS = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25], [245, 130, 48],
                        [145, 30, 180], [70, 240, 240]], dtype=np.float64) / 255.0


def overlay_labels(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) RGB of a [0, 1] gray image with label colours blended where labels > 0."""
    rgb = np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=-1)
    colors = BONE_COLORS[np.clip(labels, 0, len(BONE_COLORS) - 1)]
    m = (labels > 0)[..., None]
    return np.where(m, (1 - alpha) * rgb + alpha * colors, rgb)


def save_segmentation_png(path: str | os.PathLike, images, targets, predictions, uncertainties=None,
                          title: str = "") -> Path:
    """Rows of (radiograph, reference overlay, prediction overlay[, uncertainty map]) for a few images.

    Args:
        images: sequence of (H, W) arrays in [0, 1].
        targets: sequence of (H, W) label maps (e.g. the annotators' consensus).
        predictions: sequence of (H, W) predicted label maps.
        uncertainties: optional sequence of (H, W) maps in [0, 1].
    """
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = 3 if uncertainties is None else 4
    n = len(images)
    fig = Figure(figsize=(2.2 * cols, 3.0 * n), dpi=110)
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        panels = [(images[i], "radiograph", "gray"), (overlay_labels(images[i], targets[i]), "consensus", None),
                  (overlay_labels(images[i], predictions[i]), "prediction", None)]
        if uncertainties is not None:
            panels.append((uncertainties[i], "uncertainty", "magma"))
        for ax, (img, name, cmap) in zip(axes[i], panels):
            ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save_atomic(fig, path)
