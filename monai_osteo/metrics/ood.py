"""Feature-space out-of-distribution scores and thresholds calibrated for a stated false-rejection rate.

- :class:`BoneFeatureOOD`: class-conditional Gaussians with one tied covariance on the encoder's features of the
  training bone patches, one class per bone (ulna, radius, M1-M5), scored by the Mahalanobis distance of a patch to
  the Gaussian of the bone it was cut from (Lee et al. 2018, without input pre-processing). The covariance is
  Ledoit-Wolf shrunk (:class:`sklearn.covariance.LedoitWolf`): a ResNet's 512-2048 features from a few hundred
  radiographs give a singular sample covariance. scikit-learn's ``EllipticEnvelope``/``MinCovDet`` fit one Gaussian
  and need n >> d; pytorch-ood is not a dependency; the class-conditional tied form takes ten lines here.
- :func:`energy_score`: ``-T logsumexp(logits / T)`` (Liu et al. 2020), measured beside the Mahalanobis score.
- :func:`calibrate_thresholds`: thresholds on in-distribution validation scores for a target false-rejection rate
  of all the learned gates together (split-conformal with a Bonferroni split, Angelopoulos & Bates 2021), with the
  finite-sample guarantee and its limit for small validation sets stated in the record.

- [0] Lee K. et al., 2018, A simple unified framework for detecting out-of-distribution samples and adversarial
  attacks (NeurIPS).
- [1] Liu W. et al., 2020, Energy-based out-of-distribution detection (NeurIPS).
- [2] Angelopoulos A. N., Bates S., 2021, A gentle introduction to conformal prediction and distribution-free
  uncertainty quantification (arXiv:2107.07511).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["BoneFeatureOOD", "calibrate_thresholds", "energy_score"]

logger = logging.getLogger("monai_osteo.metrics")


def energy_score(logits: torch.Tensor | np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy ``-T logsumexp(logits / T)`` per row of (N, C) logits; larger = more out-of-distribution."""
    x = torch.as_tensor(logits, dtype=torch.float64)
    if x.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(x.shape)}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}.")
    return (-temperature * torch.logsumexp(x / temperature, dim=1)).numpy()


def calibrate_thresholds(scores: Mapping[str, Sequence[float]], false_rejection_rate: float,
                         min_samples: int = 5) -> dict:
    """Thresholds (reject when any ``score > threshold``) for a target false-rejection rate of all scores together.

    Split-conformal calibration on in-distribution validation samples with a Bonferroni split of the rate: each of
    the m scores gets the ``k``-th smallest of its n calibration values, ``k = ceil((n + 1)(1 - rate / m))``. For a
    new sample exchangeable with the calibration ones, P(score > threshold) <= rate / m for each score whenever
    ``k <= n``, so P(refused) <= rate. With fewer than ``m / rate - 1`` samples that guarantee is out of reach: the
    largest calibration value is used and the achievable bound, ``m / (n + 1)``, is reported. No distribution is
    assumed (the scores' tails are heavy: a normal fit underestimates them).

    Args:
        scores: score name -> in-distribution calibration scores (larger = more atypical). Non-finite values are
            refused whatever the threshold: they count in the reported rejection rate, not in the calibration.
        false_rejection_rate: target rate in (0, 0.5).
        min_samples: fewest finite values a score needs to be calibrated. A score with fewer (e.g. a segmentation
            that finds no hand on the validation radiographs) gets the threshold ``-inf``: its gate refuses every
            image until the model is retrained and the gates refitted; it is listed in ``uncalibrated``.

    Returns:
        ``thresholds`` {name: value}; ``n`` {name: finite samples}; ``k``; ``guaranteed`` (``k <= n`` for every
        score); ``bound`` (the guaranteed rate, or the achievable one); ``empirical_rejection_rate`` (all samples
        at the thresholds, all scores together); ``median`` {name: value or None}; ``uncalibrated`` [names].
    """
    if not 0.0 < false_rejection_rate < 0.5:
        raise ValueError(f"false_rejection_rate must be in (0, 0.5), got {false_rejection_rate!r}.")
    if not scores:
        raise ValueError("scores must map at least one name to a sequence of scores.")
    m = len(scores)
    lengths = {name: len(np.asarray(v).ravel()) for name, v in scores.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"scores must hold one value per sample for every score (same lengths), got {lengths}.")
    thresholds, ns, medians, k_all, refused, uncalibrated = {}, {}, {}, {}, None, []
    for name, values in scores.items():
        v = np.asarray(values, dtype=np.float64).ravel()
        finite = np.sort(v[np.isfinite(v)])
        n = int(finite.size)
        k = int(np.ceil((n + 1) * (1.0 - false_rejection_rate / m)))
        if n < min_samples:
            thresholds[name], medians[name] = float("-inf"), None
            uncalibrated.append(name)
        else:
            thresholds[name], medians[name] = float(finite[min(k, n) - 1]), float(np.median(finite))
        ns[name], k_all[name] = n, k
        out = ~(v <= thresholds[name])
        refused = out if refused is None else refused | out
    guaranteed = not uncalibrated and all(k_all[s] <= ns[s] for s in scores)
    bound = float(false_rejection_rate) if guaranteed else float(sum(
        false_rejection_rate / m if k_all[s] <= ns[s] else 1.0 / (ns[s] + 1) for s in scores))
    return {"thresholds": thresholds, "n": ns, "k": k_all, "guaranteed": guaranteed, "bound": bound,
            "empirical_rejection_rate": float(refused.mean()), "false_rejection_rate": float(false_rejection_rate),
            "median": medians, "uncalibrated": uncalibrated}


class BoneFeatureOOD:
    """Mahalanobis distance of bone-patch features to the training bones of the same kind (tied covariance).

    Example::

        ood = BoneFeatureOOD().fit(train_features, train_bone_names)
        d2 = ood.distances(features, bone_names)  # one per patch
        score = ood.score(features, bone_names)  # one per radiograph: log of the median d2 / feature_dim
    """

    def __init__(self) -> None:
        self.classes: list[str] = []
        self.dropped: list[str] = []
        self.means: np.ndarray | None = None
        self.precision: np.ndarray | None = None
        self.n_fitted = 0

    def fit(self, features: np.ndarray, groups: Sequence[str]) -> BoneFeatureOOD:
        """Fit class means and the shrunk tied covariance.

        Args:
            features: (N, F) encoder features of in-distribution patches.
            groups: N class names (the bone each patch shows). Groups with a single patch are not modelled (logged).
        """
        from sklearn.covariance import LedoitWolf

        x = np.asarray(features, dtype=np.float64)
        g = np.asarray(list(groups))
        if x.ndim != 2 or x.shape[0] != g.shape[0]:
            raise ValueError(f"features must be (N, F) with one group per row, got {x.shape} and {g.shape[0]} groups.")
        counts = {c: int((g == c).sum()) for c in sorted(set(g.tolist()))}
        classes = [c for c, n in counts.items() if n >= 2]
        if not classes:
            raise ValueError(f"at least one group needs at least 2 patches to fit, got {counts}.")
        self.dropped = [c for c in counts if c not in classes]
        if self.dropped:
            logger.warning("BoneFeatureOOD: groups %s have fewer than 2 patches and are not modelled: their patches "
                           "score inf (unlike any training bone).", self.dropped)
        keep = np.isin(g, classes)
        x, g = x[keep], g[keep]
        means = np.stack([x[g == c].mean(0) for c in classes])
        centred = x - means[np.searchsorted(classes, g)]
        lw = LedoitWolf(assume_centered=True).fit(centred)
        self.classes, self.means, self.precision = classes, means, lw.precision_
        self.n_fitted = int(x.shape[0])
        return self

    def distances(self, features: np.ndarray | torch.Tensor, groups: Sequence[str]) -> np.ndarray:
        """(N,) squared Mahalanobis distances of each patch to its group's mean; ``inf`` for a group that is not
        modelled (never seen in training, or with too few patches): such a patch is unlike any training bone."""
        if self.means is None:
            raise RuntimeError("BoneFeatureOOD is not fitted; call fit() or load_state_dict() first.")
        x = np.asarray(torch.as_tensor(features).detach().cpu(), dtype=np.float64)
        groups = list(groups)
        if x.ndim != 2 or x.shape[1] != self.means.shape[1]:
            raise ValueError(f"features must be (N, {self.means.shape[1]}), got {x.shape}; the gates were fitted on "
                             "another encoder: refit them (configs/fit_gates.json).")
        if x.shape[0] != len(groups):
            raise ValueError(f"features must have one row per group, got {x.shape[0]} rows and {len(groups)} groups.")
        known = np.array([c in self.classes for c in groups], bool)
        out = np.full(len(groups), np.inf)
        if known.any():
            diff = x[known] - self.means[[self.classes.index(c) for c, k in zip(groups, known) if k]]
            out[known] = ((diff @ self.precision) * diff).sum(1)
        return out

    def score(self, features: np.ndarray | torch.Tensor, groups: Sequence[str]) -> float:
        """One score per radiograph: ``log`` of the median over its patches of ``d2 / F``; ``inf`` without patches.

        The median: one odd patch (a ring over a bone, a slip of the segmentation) does not refuse a hand, while an
        image whose patches are all unlike bones is refused.
        """
        if len(groups) == 0:
            return float("inf")
        d2 = self.distances(features, groups)
        return float(np.log(np.median(d2) / self.means.shape[1]))

    def state_dict(self) -> dict:
        """Saveable state (tensors, for ``torch.save``)."""
        if self.means is None:
            raise RuntimeError("BoneFeatureOOD is not fitted; nothing to save.")
        return {"classes": list(self.classes), "dropped": list(self.dropped), "means": torch.as_tensor(self.means),
                "precision": torch.as_tensor(self.precision), "n_fitted": self.n_fitted}

    def load_state_dict(self, state: Mapping) -> BoneFeatureOOD:
        """Restore a :meth:`state_dict`."""
        self.classes = list(state["classes"])
        self.dropped = list(state.get("dropped", []))
        self.means = np.asarray(torch.as_tensor(state["means"]), np.float64)
        self.precision = np.asarray(torch.as_tensor(state["precision"]), np.float64)
        self.n_fitted = int(state["n_fitted"])
        return self
