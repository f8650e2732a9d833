"""Per-bone contribution to the positive decision (the journal paper's Fig. 5) as a bar chart PNG.

- [0] hand_xray_osteoporosis_journal, Fig. 5 (mean and standard deviation of the per-bone probability of
  osteoporosis over the true-positive subjects, pooled over seeds).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from monai_osteo.data.labels import BONE_LABELS
from monai_osteo.report.figures import BONE_COLORS, _save_atomic

__all__ = ["bone_contributions", "save_bone_contribution_png"]


def bone_contributions(records: Iterable[Mapping],
                       bone_names: Sequence[str] = tuple(BONE_LABELS)) -> dict[str, list[float]]:
    """Per-bone probabilities over the true positives (``label == 1`` and ``decision == 1``).

    Args:
        records: one dict per subject (and seed) with ``"label"`` (int), ``"decision"`` (int) and
            ``"bone_probabilities"`` (bone name -> float, or None when the bone was not found).
        bone_names: bones to collect, in output order.

    Returns:
        bone name -> list of probabilities; bones that are None, NaN or absent in a record are skipped.
    """
    if isinstance(bone_names, str):
        raise ValueError(f"bone_names must be a sequence of names, got the single string {bone_names!r}.")
    out: dict[str, list[float]] = {name: [] for name in bone_names}
    for i, rec in enumerate(records):
        missing = [k for k in ("label", "decision", "bone_probabilities") if k not in rec]
        if missing:
            raise ValueError(f"records[{i}] must have keys 'label', 'decision' and 'bone_probabilities', "
                             f"missing {missing}.")
        if int(rec["label"]) != 1 or int(rec["decision"]) != 1:
            continue
        for name in bone_names:
            p = rec["bone_probabilities"].get(name)
            if p is not None and math.isfinite(float(p)):
                out[name].append(float(p))
    return out


def save_bone_contribution_png(path: str | os.PathLike, per_bone: Mapping[str, Sequence[float]],
                               title: str = "Per-bone probability of osteoporosis (true positives)") -> Path:
    """Bar chart of the mean (bar) and standard deviation (error bar) of each bone's probabilities.

    Bones are drawn in ``BONE_LABELS`` order with their :data:`BONE_COLORS`; each bar is annotated with its
    number of values ``n``; bones with no values (empty or absent from ``per_bone``) show "n=0" and no bar.

    Args:
        path: output PNG file (written atomically; missing parent directories are created).
        per_bone: bone name -> probabilities in [0, 1], e.g. from :func:`bone_contributions`.
        title: figure title.
    """
    unknown = sorted(set(per_bone) - set(BONE_LABELS))
    if unknown:
        raise ValueError(f"per_bone keys must be among {list(BONE_LABELS)}, got {unknown!r}.")
    values = {}
    for name in BONE_LABELS:
        v = np.asarray(per_bone.get(name, ()), dtype=np.float64).ravel()
        if not (np.isfinite(v).all() and ((v >= 0) & (v <= 1)).all()):
            raise ValueError(f"per_bone[{name!r}] must hold finite probabilities in [0, 1]; drop NaN/None first.")
        values[name] = v

    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5.5, 4.0), dpi=120, layout="constrained")
    ax = fig.subplots()
    names = list(BONE_LABELS)
    xs = np.arange(len(names))
    means = np.array([values[n].mean() if values[n].size else 0.0 for n in names])
    stds = np.array([values[n].std() if values[n].size else 0.0 for n in names])
    has = np.array([values[n].size > 0 for n in names])
    colors = np.array([BONE_COLORS[BONE_LABELS[n]] for n in names])
    ax.bar(xs[has], means[has], yerr=stds[has], capsize=3, color=colors[has], edgecolor="black", linewidth=0.5,
           error_kw={"lw": 0.8})
    for x, name, m, s in zip(xs, names, means, stds):
        n = values[name].size
        ax.text(x, min(m + s, 1.0) + 0.02, f"n={n}", ha="center", va="bottom", fontsize=7,
                color="black" if n else "grey")
    ax.set(xticks=xs, ylim=(0, 1.12), ylabel="predicted probability of osteoporosis", title=title)
    ax.set_xticklabels(names)
    ax.title.set_fontsize(9)
    return _save_atomic(fig, path)
