"""Is a bone label map laid out like a hand? A layout model learned from annotated hand radiographs.

A segmentation network labels *something* on any image: on a chest radiograph it "finds" seven bones scattered
over the lungs, confidently. What it cannot fake is the layout of a hand: radius and ulna proximal and roughly
parallel, five metacarpals fanning distally in the order M1-M5, each bone one elongated component of a typical
relative size. :class:`HandLayoutModel` learns that layout from label maps (the training split's annotator
masks) and scores a new label map by how far its layout lies from it:

1. :func:`measure_bone_layout`: per bone, the centroid, area and second moments of its largest connected component
   and the fraction of its pixels outside that component (fragmentation).
2. Similarity alignment (translation, rotation, reflection for left/right hands, scale) of the bone centroids to
   the model's mean shape (generalised Procrustes analysis; :func:`scipy.linalg.orthogonal_procrustes`), so a
   rotated, mirrored, magnified or differently sized hand is not penalised.
3. Six features per bone in the aligned frame: centroid (2), log relative area (1), log aspect ratio of the
   second moments (1), axis orientation as (cos 2θ, sin 2θ) (2) - 42 for the seven bones.
4. A Gaussian with a Ledoit-Wolf shrunk covariance (:class:`sklearn.covariance.LedoitWolf`) on the features of the
   reference maps. A map missing some bones is scored on the Gaussian's marginal over the bones present (the
   sub-vector of the mean and the sub-block of the covariance), so partial hands remain comparable.
5. The squared Mahalanobis distance is mapped to a standard-normal score with the Wilson-Hilferty transform of a
   chi-square with as many degrees of freedom as features present, making scores of different bone counts
   comparable; the threshold is chosen on validation data (:func:`monai_osteo.metrics.ood.calibrate_thresholds`).

scikit-learn and SciPy provide the covariance estimate and the alignment; no library provides a shape model of a
labelled bone layout with missing parts, hence this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage
from scipy.linalg import orthogonal_procrustes

from monai_osteo.data.labels import BONE_LABELS, BONES

__all__ = ["FEATURES_PER_BONE", "HandLayoutModel", "measure_bone_layout", "wilson_hilferty"]

#: features per bone: aligned centroid (row, col), log relative area, log aspect ratio, cos 2θ, sin 2θ
FEATURES_PER_BONE = 6
_EIGHT = np.ones((3, 3), dtype=bool)


def measure_bone_layout(label_map: np.ndarray, bones: Sequence[str] = BONES) -> dict[str, np.ndarray]:
    """Shape measurements of each bone's largest 8-connected component in a label map.

    Args:
        label_map: (H, W) integer label map (0 background, values of :data:`~monai_osteo.data.labels.BONE_LABELS`),
            at any resolution.
        bones: bone names to measure, in output order.

    Returns:
        ``present`` (n,) bool; ``centroid`` (n, 2) (row, col) in pixels; ``area`` (n,) pixels of the largest
        component; ``cov`` (n, 2, 2) covariance of its pixel coordinates; ``fragmentation`` (n,) fraction of the
        bone's pixels outside its largest component (0 = one connected component). Absent bones (and bones whose
        largest component has fewer than 3 pixels, which have no second moments) hold NaN.
    """
    lab = np.asarray(label_map)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"label_map must be a 2-D integer label map, got shape {lab.shape} dtype {lab.dtype}.")
    unknown = [b for b in bones if b not in BONE_LABELS]
    if unknown:
        raise ValueError(f"bones must be among {list(BONE_LABELS)}, got {unknown!r}.")
    n = len(bones)
    out = {"present": np.zeros(n, bool), "centroid": np.full((n, 2), np.nan), "area": np.full(n, np.nan),
           "cov": np.full((n, 2, 2), np.nan), "fragmentation": np.full(n, np.nan)}
    values = [BONE_LABELS[b] for b in bones]
    boxes = ndimage.find_objects(lab.astype(np.int64, copy=False), max_label=max(values))
    for i, v in enumerate(values):
        sl = boxes[v - 1]
        if sl is None:
            continue
        comp, k = ndimage.label(lab[sl] == v, structure=_EIGHT)
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        largest = int(sizes.argmax())
        rows, cols = np.nonzero(comp == largest)
        if rows.size < 3:
            continue
        pts = np.stack([rows + sl[0].start, cols + sl[1].start], 1).astype(np.float64)
        out["present"][i] = True
        out["centroid"][i] = pts.mean(0)
        out["area"][i] = float(rows.size)
        out["cov"][i] = np.cov(pts, rowvar=False) + np.eye(2) / 12.0  # + a pixel's own second moment
        out["fragmentation"][i] = 1.0 - float(sizes[largest]) / float(sizes.sum())
    return out


def wilson_hilferty(d2: np.ndarray | float, dof: np.ndarray | int) -> np.ndarray:
    """Standard-normal equivalent of a chi-square(``dof``) value ``d2`` (Wilson & Hilferty 1931): large = atypical.

    ``z = ((d2 / k)^(1/3) - (1 - 2 / (9 k))) / sqrt(2 / (9 k))``; against the exact chi-square quantile the error is
    below 0.05 for k >= 6 over the range that matters here (the upper tail), 0.16 at k = 3 in the far lower tail.
    """
    d2, k = np.asarray(d2, dtype=np.float64), np.asarray(dof, dtype=np.float64)
    if np.any(k < 1):
        raise ValueError(f"dof must be >= 1, got {dof!r}.")
    c = 2.0 / (9.0 * k)
    return (np.cbrt(np.maximum(d2, 0.0) / k) - (1.0 - c)) / np.sqrt(c)


def _align(x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Similarity-align points ``x`` (n, 2) to ``target`` (n, 2): returns (R, scale, x's centroid).

    ``aligned = scale * (x - centroid) @ R + target.mean(0)``; R orthogonal (reflections allowed: left and right
    hands are mirror images).
    """
    xc = x - x.mean(0)
    tc = target - target.mean(0)
    norm = float((xc**2).sum())
    if not norm > 0:
        raise ValueError("bone centroids coincide; cannot align the layout.")
    r, s = orthogonal_procrustes(xc, tc)
    return r, float(s) / norm, x.mean(0)


class HandLayoutModel:
    """Gaussian model of the hand's bone layout, fitted on reference label maps; scores atypical layouts.

    Args:
        bones: the bones of the layout, in label order by default.
        min_bones: fewest bones present for a layout to be scored (3 points fix a similarity; fewer cannot be
            checked and score ``inf``).
        robust: score the best layout with one bone left out too (see :meth:`score`).

    Example::

        model = HandLayoutModel().fit([measure_bone_layout(m) for m in training_masks])
        z, worst = model.score(measure_bone_layout(predicted_labels))
    """

    def __init__(self, bones: Sequence[str] = BONES, min_bones: int = 4, robust: bool = True) -> None:
        self.bones = tuple(bones)
        if not 3 <= int(min_bones) <= len(self.bones):
            raise ValueError(f"min_bones must be in [3, {len(self.bones)}], got {min_bones!r}.")
        self.min_bones, self.robust = int(min_bones), bool(robust)
        self.mean_shape: np.ndarray | None = None
        self.mean: np.ndarray | None = None
        self.covariance: np.ndarray | None = None
        self.n_fitted = 0

    # -- features ---------------------------------------------------------------------------------------------
    def features(self, layout: Mapping[str, np.ndarray], present: Sequence[bool] | None = None) -> np.ndarray:
        """The (n_bones * 6,) feature vector of one layout (NaN for absent bones), aligned to the mean shape."""
        if self.mean_shape is None:
            raise RuntimeError("HandLayoutModel is not fitted; call fit() or load_state_dict() first.")
        return self._features(layout, self.mean_shape, present)

    def _features(self, layout: Mapping[str, np.ndarray], shape: np.ndarray,
                  present: Sequence[bool] | None = None) -> np.ndarray:
        ok = np.asarray(layout["present"], bool).copy()
        if present is not None:
            ok &= np.asarray(present, bool)
        feats = np.full((len(self.bones), FEATURES_PER_BONE), np.nan)
        if ok.sum() < 3:
            return feats.ravel()
        cent = np.asarray(layout["centroid"], np.float64)
        r, s, c0 = _align(cent[ok], shape[ok])
        aligned = s * (cent[ok] - c0) @ r + shape[ok].mean(0)
        cov = np.asarray(layout["cov"], np.float64)[ok]
        evals, evecs = np.linalg.eigh(cov)  # ascending: evecs[..., 1] = major axis
        major = np.einsum("nj,jk->nk", evecs[..., 1], r)
        theta = np.arctan2(major[:, 1], major[:, 0])
        area = np.asarray(layout["area"], np.float64)[ok]
        feats[ok] = np.column_stack([
            aligned,
            np.log(area * s * s),
            0.5 * np.log(np.maximum(evals[:, 1], 1e-12) / np.maximum(evals[:, 0], 1e-12)),
            np.cos(2 * theta), np.sin(2 * theta),
        ])
        return feats.ravel()

    # -- fitting ----------------------------------------------------------------------------------------------
    def fit(self, layouts: Sequence[Mapping[str, np.ndarray]], iterations: int = 10) -> HandLayoutModel:
        """Fit the mean shape (generalised Procrustes on the complete layouts) and the feature Gaussian.

        Args:
            layouts: :func:`measure_bone_layout` outputs of reference label maps (e.g. the training masks). Layouts
                with every bone present fit the mean shape and the Gaussian; at least 10 are needed.
            iterations: Procrustes iterations (it converges in 2-3 on hands).
        """
        from sklearn.covariance import LedoitWolf

        complete = [lay for lay in layouts if np.asarray(lay["present"], bool).all()]
        if len(complete) < 10:
            raise ValueError(f"layouts must hold at least 10 label maps with all {len(self.bones)} bones, got "
                             f"{len(complete)} of {len(layouts)}; fit on more annotated radiographs.")
        cents = np.stack([np.asarray(lay["centroid"], np.float64) for lay in complete])
        shape = cents[0] - cents[0].mean(0)
        shape /= np.sqrt((shape**2).sum())
        for _ in range(int(iterations)):
            aligned = []
            for c in cents:
                r, s, c0 = _align(c, shape)
                aligned.append(s * (c - c0) @ r)
            new = np.mean(aligned, 0)
            new -= new.mean(0)
            new /= np.sqrt((new**2).sum())
            done = np.abs(new - shape).max() < 1e-9
            shape = new
            if done:
                break
        self.mean_shape = shape
        x = np.stack([self._features(lay, shape) for lay in complete])
        lw = LedoitWolf().fit(x)
        self.mean, self.covariance, self.n_fitted = lw.location_, lw.covariance_, len(complete)
        return self

    # -- scoring ----------------------------------------------------------------------------------------------
    def score(self, layout: Mapping[str, np.ndarray], present: Sequence[bool] | None = None) -> tuple[float, str]:
        """Atypicality of a layout: (Wilson-Hilferty z of its Mahalanobis distance, the most atypical bone).

        With ``robust`` (the default) and more than ``min_bones`` bones present, the layout is also scored with each
        bone left out (features re-aligned without it) and the lowest z is returned, with the bone left out as the
        atypical one: a hand with one odd bone (a segmentation slip, a fracture) is still a hand, while a scattered
        layout stays atypical whichever bone is dropped.

        Args:
            layout: a :func:`measure_bone_layout` output.
            present: optional mask of the bones to use (e.g. those the screening kept); default: all measured.

        Returns:
            ``inf`` and "" when fewer than ``min_bones`` bones are present.
        """
        ok = np.asarray(layout["present"], bool).copy()
        if present is not None:
            ok &= np.asarray(present, bool)
        z, worst = self._score(layout, ok)
        if self.robust and ok.sum() > self.min_bones:
            for i in np.flatnonzero(ok):
                sub = ok.copy()
                sub[i] = False
                zi, _ = self._score(layout, sub)
                if zi < z:
                    z, worst = zi, self.bones[i]
        return z, worst

    def _score(self, layout: Mapping[str, np.ndarray], ok: np.ndarray) -> tuple[float, str]:
        x = self.features(layout, ok)
        keep = ~np.isnan(x)
        if keep.sum() < self.min_bones * FEATURES_PER_BONE:
            return float("inf"), ""
        diff = x[keep] - self.mean[keep]
        sol = np.linalg.solve(self.covariance[np.ix_(keep, keep)], diff)
        d2 = float(diff @ sol)
        # per-bone share of the distance (the quadratic form split by bone blocks), to say which bone is odd
        contrib = (diff * sol).reshape(-1, FEATURES_PER_BONE).sum(1)
        names = [b for b, k in zip(self.bones, keep.reshape(-1, FEATURES_PER_BONE).all(1)) if k]
        return float(wilson_hilferty(d2, int(keep.sum()))), names[int(np.argmax(contrib))]

    # -- persistence ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """JSON/torch-saveable state (lists of floats)."""
        if self.mean_shape is None:
            raise RuntimeError("HandLayoutModel is not fitted; nothing to save.")
        return {"bones": list(self.bones), "min_bones": self.min_bones, "robust": self.robust,
                "mean_shape": self.mean_shape.tolist(),
                "mean": self.mean.tolist(), "covariance": self.covariance.tolist(), "n_fitted": self.n_fitted}

    def load_state_dict(self, state: Mapping) -> HandLayoutModel:
        """Restore a :meth:`state_dict`."""
        self.bones, self.min_bones = tuple(state["bones"]), int(state["min_bones"])
        self.robust = bool(state.get("robust", True))
        self.mean_shape = np.asarray(state["mean_shape"], np.float64)
        self.mean = np.asarray(state["mean"], np.float64)
        self.covariance = np.asarray(state["covariance"], np.float64)
        self.n_fitted = int(state["n_fitted"])
        return self
