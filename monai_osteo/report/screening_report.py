"""One-page screening report of one subject as a PNG: bone masks, per-bone probabilities, uncertainty, QC.

- [0] hand_xray_osteoporosis_journal, §"Bone segmentation" and §"Osteoporosis classification" (the 7 target
  bones and their per-bone probabilities of osteoporosis).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monai_osteo.data.labels import BONE_LABELS
from monai_osteo.report.figures import BONE_COLORS, _save_atomic, overlay_labels

__all__ = ["save_screening_report_png"]


def _display(image: np.ndarray) -> np.ndarray:
    """Map ``image`` to [0, 1] by its 1st-99th percentile (min-max if those coincide); non-finite -> 0."""
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros(image.shape)
    lo, hi = np.percentile(image[finite], [1, 99])
    if hi <= lo:
        lo, hi = float(image[finite].min()), float(image[finite].max())
    if hi <= lo:
        return np.zeros(image.shape)
    return np.clip(np.where(finite, (image - lo) / (hi - lo), 0.0), 0.0, 1.0)


def _probability(value, arg: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{arg} must be a probability in [0, 1], got {value!r}.")
    return value


def save_screening_report_png(path: str | os.PathLike, image, labels, bone_probabilities: Mapping[str, float | None],
                              decision: str, probability: float | None, threshold: float = 0.5, uncertainty=None,
                              qc_flags: Sequence[str] = (), title: str = "") -> Path:
    """Write the screening report of one radiograph to ``path`` (PNG, atomically) and return the path.

    Panels: the radiograph with the bone masks in :data:`BONE_COLORS`; horizontal bars of the per-bone
    probability of osteoporosis (bones not found marked "not found", dashed line at ``threshold``); the
    uncertainty map with a colour bar when given. The header states the decision, the subject probability
    and the QC flags (or "QC: ok").

    Args:
        path: output PNG file; missing parent directories are created.
        image: (H, W) radiograph in any intensity range (shown normalised to its 1st-99th percentile).
        labels: (H, W) integer label map, 0 background, 1-7 as in ``BONE_LABELS``.
        bone_probabilities: bone name -> probability in [0, 1], or None when the bone was not found;
            bones of ``BONE_LABELS`` absent from the mapping are shown as not found.
        decision: the screening decision as worded for the reader, e.g. "osteoporosis".
        probability: subject-level probability of osteoporosis in [0, 1]; None when there is none (no decision).
        threshold: decision threshold on the probabilities, in [0, 1].
        uncertainty: optional (h, w) map, any resolution; drawn stretched over the image's extent.
        qc_flags: quality-control flags or sentences (e.g. from ``monai_osteo.metrics.describe_qc_flags``).
        title: optional first header line (e.g. a subject id).
    """
    image = np.asarray(image, dtype=np.float64)
    labels = np.asarray(labels)
    if image.ndim != 2:
        raise ValueError(f"image must be a 2-D (H, W) array, got shape {image.shape}; squeeze channel dims.")
    if labels.shape != image.shape:
        raise ValueError(f"labels must have the image's shape {image.shape}, got {labels.shape}.")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 7):
        raise ValueError(f"labels must be an integer map with values in 0..7, got dtype {labels.dtype} "
                         f"and range [{labels.min()}, {labels.max()}].")
    unknown = sorted(set(bone_probabilities) - set(BONE_LABELS))
    if unknown:
        raise ValueError(f"bone_probabilities keys must be among {list(BONE_LABELS)}, got {unknown!r}.")
    probs = {name: None if bone_probabilities.get(name) is None
             else _probability(bone_probabilities[name], f"bone_probabilities[{name!r}]") for name in BONE_LABELS}
    probability = None if probability is None else _probability(probability, "probability")
    threshold = _probability(threshold, "threshold")
    if uncertainty is not None:
        uncertainty = np.asarray(uncertainty, dtype=np.float64)
        if uncertainty.ndim != 2 or uncertainty.size == 0:
            raise ValueError(f"uncertainty must be a non-empty 2-D (h, w) array or None, "
                             f"got shape {uncertainty.shape}.")
    if isinstance(qc_flags, str):
        qc_flags = [qc_flags]

    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = image.shape
    ncols = 2 if uncertainty is None else 3
    fig = Figure(figsize=(4.2 * ncols, 5.2), dpi=110, layout="constrained")
    axes = fig.subplots(1, ncols, width_ratios=[1.0, 1.1] + ([1.0] if uncertainty is not None else []))
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)

    ax = axes[0]
    # the panel is ~460 px wide at this dpi: drawing a paper-size radiograph (3588 x 2515) at full resolution only
    # costs time, so it is subsampled to at most ~1200 px on its long side (extent keeps the pixel coordinates)
    step = max(1, -(-max(h, w) // 1200))
    ax.imshow(overlay_labels(_display(image[::step, ::step]), labels[::step, ::step]), extent=extent,
              interpolation="nearest")
    ax.set_title("radiograph and bone masks", fontsize=9)
    ax.set_axis_off()
    present = set(np.unique(labels).tolist())
    handles = [Patch(color=BONE_COLORS[v], label=name if v in present else f"{name} (not found)")
               for name, v in BONE_LABELS.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.01), ncols=4, fontsize=7, frameon=False,
              handlelength=1.0, columnspacing=0.8)

    ax = axes[1]
    names = list(BONE_LABELS)
    ys = np.arange(len(names))
    values = [0.0 if probs[n] is None else probs[n] for n in names]
    ax.barh(ys, values, color=[BONE_COLORS[BONE_LABELS[n]] for n in names], edgecolor="black", linewidth=0.5)
    for y, name in zip(ys, names):
        p = probs[name]
        text, color = ("not found", "grey") if p is None else (f"{p:.2f}", "black")
        ax.text((p or 0.0) + 0.02, y, text, va="center", fontsize=8, color=color, style="italic" if p is None else None)
    ax.axvline(threshold, ls="--", c="black", lw=1.0, label=f"threshold {threshold:.2f}")
    ax.set(yticks=ys, xlim=(0, 1.18), xlabel="probability of osteoporosis")
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_title("per-bone probability", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)

    if uncertainty is not None:
        ax = axes[2]
        im = ax.imshow(uncertainty, cmap="magma", extent=extent, interpolation="nearest", aspect="equal")
        ax.set_title("uncertainty", fontsize=9)
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)

    qc = ["QC: ok"] if not qc_flags else [f"QC: {f}" for f in qc_flags]  # one line each: long messages fit
    lines = ([title] if title else []) + [
        f"Decision: {decision}" + ("" if probability is None else
                                   f"  |  subject probability {probability:.2f} (threshold {threshold:.2f})"), *qc]
    fig.suptitle("\n".join(lines), fontsize=10, color="black" if not qc_flags else "darkred")
    return _save_atomic(fig, path)
