"""Screening gates: post-processing steps that refuse a decision on what the screener cannot screen.

Three layers, each a transform on the hand screening inferer's result dicts (like
:class:`~monai_osteo.transforms.screening.ScreeningDecisiond`), each with its own QC flag and message, run before
the decision; :class:`~monai_osteo.transforms.screening.ScreeningDecisiond` gives ``decision = -1`` ("no decision:
<reason>") when any gate failed:

1. :class:`InputPlausibilityGated` (``implausible_input``): is the image a projection radiograph at all
   (:func:`~monai_osteo.metrics.plausibility.input_plausibility`: DICOM modality/body part, colour, size, dynamic
   range). Fixed, documented rules.
2. :class:`AnatomyGated` (``implausible_anatomy``): is the segmentation laid out like a hand
   (:class:`~monai_osteo.metrics.anatomy.HandLayoutModel`, learned from the training masks) and is each bone one
   connected component (fragmentation).
3. :class:`FeatureOODGated` (``out_of_distribution``): do the bone patches look like the training bones to the
   classifier's encoder (:class:`~monai_osteo.metrics.ood.BoneFeatureOOD`).

The learned models and their thresholds (chosen on validation radiographs for a stated false-rejection rate) are
saved with the model as ``gates.pt`` by ``configs/fit_gates.json`` (:class:`ScreeningGates`); thresholds can be
overridden in ``inference.json`` (``gate_thresholds``).
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_osteo.data.labels import BONES
from monai_osteo.io import atomic_save
from monai_osteo.metrics.anatomy import HandLayoutModel
from monai_osteo.metrics.ood import BoneFeatureOOD, energy_score
from monai_osteo.metrics.plausibility import DEFAULT_BODY_PARTS, DEFAULT_MODALITIES, input_plausibility

__all__ = ["GATE_FLAGS", "AnatomyGated", "FeatureOODGated", "InputPlausibilityGated", "ScreeningGates",
           "failed_gates"]

#: gate name -> QC flag it raises
GATE_FLAGS = {"input": "implausible_input", "anatomy": "implausible_anatomy", "features": "out_of_distribution"}
GATES_VERSION = 1


class ScreeningGates:
    """The learned gates of one model: layout model, feature model, thresholds and their calibration record.

    ``thresholds``: ``layout`` (Wilson-Hilferty z), ``fragmentation`` (fraction), ``segmentation_uncertainty``
    (1 - segmentation confidence), ``features`` (log median d2/F).
    """

    def __init__(self, layout: HandLayoutModel, features: BoneFeatureOOD, thresholds: Mapping[str, float],
                 info: Mapping | None = None) -> None:
        self.layout, self.features = layout, features
        self.thresholds = {k: float(v) for k, v in thresholds.items()}
        self.info = dict(info or {})

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``gates.pt`` atomically (tensors and plain types: loads with ``weights_only=True``)."""
        return atomic_save({"version": GATES_VERSION, "layout": self.layout.state_dict(),
                            "features": self.features.state_dict(), "thresholds": self.thresholds,
                            "info": self.info}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, thresholds: Mapping[str, float] | None = None) -> ScreeningGates:
        """Read ``gates.pt``; ``thresholds`` override the stored ones (e.g. from ``inference.json``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no screening gates for this model; fit them with `python -m monai.bundle run --config_file "
                "bundles/hand_osteo/configs/fit_gates.json` (train.json runs it as its 'gates' stage), or set "
                "gates_enabled to false in inference.json to screen without the learned gates (not recommended).")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("version") != GATES_VERSION:
            raise ValueError(f"{path}: gates version {state.get('version')!r}, expected {GATES_VERSION}; refit them.")
        stored = dict(state["thresholds"])
        unknown = sorted(set(thresholds or {}) - set(stored))
        if unknown:
            raise ValueError(f"thresholds keys must be among {sorted(stored)}, got {unknown!r}.")
        stored.update({k: float(v) for k, v in (thresholds or {}).items()})
        return cls(HandLayoutModel().load_state_dict(state["layout"]),
                   BoneFeatureOOD().load_state_dict(state["features"]), stored, state.get("info"))


def _number(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def _record(gate: str, passed: bool | None, message: str, **scores) -> dict:
    return {"gate": gate, "flag": GATE_FLAGS[gate], "passed": passed, "message": message,
            **{k: _number(v) for k, v in scores.items()}}


def failed_gates(result: Mapping) -> list[dict]:
    """The gate records of a result that failed (``passed is False``)."""
    return [g for g in result.get("gates", ()) if g.get("passed") is False]


class _Gate(MapTransform, ABC):
    """Append this gate's record to ``result["gates"]`` of each result dict under ``keys``."""

    name = ""

    def __init__(self, keys: KeysCollection = "pred", enabled: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.enabled = bool(enabled)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            many = isinstance(value, (list, tuple))
            results = list(value) if many else [value]
            out = []
            for i, r in enumerate(results):
                r = dict(r)
                record = (self.check(r, d, i if many else None) if self.enabled
                          else _record(self.name, None, "gate disabled"))
                r["gates"] = [*r.get("gates", []), record]
                out.append(r)
            d[key] = out if many else out[0]
        return d

    @abstractmethod
    def check(self, result: dict, data: Mapping, index: int | None) -> dict:
        """This gate's record for ``result``, item ``index`` of the batch (None: ``data`` holds one item)."""


class InputPlausibilityGated(_Gate):
    """Gate 1: the input image is a plausible hand radiograph (fixed rules, see
    :func:`~monai_osteo.metrics.plausibility.input_plausibility`, whose arguments this takes).

    Args:
        image_key: the batch image in the data dict (the evaluator's output holds the input batch under "image");
            its ``meta`` carries ``modality``, ``body_part`` and ``chroma`` from ``LoadRadiograph``.
    """

    name = "input"

    def __init__(self, keys: KeysCollection = "pred", image_key: str = "image", enabled: bool = True,
                 modalities: Sequence[str] = DEFAULT_MODALITIES, body_parts: Sequence[str] = DEFAULT_BODY_PARTS,
                 max_chroma: float = 0.02, min_side: int = 128, max_aspect: float = 3.0, min_gray_levels: int = 64,
                 min_contrast: float = 0.1, max_mode_fraction: float = 0.8, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, enabled, allow_missing_keys)
        self.image_key = image_key
        self.rules = {"modalities": tuple(modalities), "body_parts": tuple(body_parts), "max_chroma": max_chroma,
                      "min_side": min_side, "max_aspect": max_aspect, "min_gray_levels": min_gray_levels,
                      "min_contrast": min_contrast, "max_mode_fraction": max_mode_fraction}

    def check(self, result: dict, data: Mapping, index: int | None) -> dict:
        if self.image_key not in data:
            raise KeyError(f"InputPlausibilityGated needs the input image under {self.image_key!r}; the data has "
                           f"{sorted(map(str, data))}.")
        batch = data[self.image_key]
        image = torch.as_tensor(batch if index is None else batch[index])
        meta = _item_meta(batch, index)
        reasons = input_plausibility(image[0] if image.ndim == 3 else image, meta, **self.rules)
        return _record(self.name, not reasons, "; ".join(reasons) or "plausible radiograph")


def _item_meta(batch, index: int | None) -> dict:
    """Metadata of item ``index`` of a collated MetaTensor batch (lists/tensors per key), or of a single image."""
    meta = getattr(batch, "meta", None) or {}
    is_batch = index is not None and bool(getattr(batch, "is_batch", False))
    out = {}
    for k in ("modality", "body_part", "chroma"):
        if k not in meta:
            continue
        v = meta[k]
        if is_batch and isinstance(v, (list, tuple)):
            v = v[index]
        elif is_batch and isinstance(v, torch.Tensor) and v.ndim >= 1:
            v = v[index].item()
        out[k] = v.item() if isinstance(v, torch.Tensor) else v
    return out


class _LearnedGate(_Gate):
    def __init__(self, keys: KeysCollection = "pred", gates_file: str | os.PathLike | None = None,
                 thresholds: Mapping[str, float] | None = None, enabled: bool = True,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, enabled, allow_missing_keys)
        self.gates_file, self.thresholds = gates_file, dict(thresholds or {})
        self._gates: ScreeningGates | None = None

    @property
    def gates(self) -> ScreeningGates:
        """The gates, read from ``gates_file`` on first use (so a config builds before the file exists)."""
        if self._gates is None:
            if self.gates_file is None:
                raise ValueError(f"{type(self).__name__} needs gates_file (the model's gates.pt).")
            self._gates = ScreeningGates.load(self.gates_file, self.thresholds)
        return self._gates


class AnatomyGated(_LearnedGate):
    """Gate 2: the bone layout is a hand's (z <= ``layout`` threshold), no bone is fragmented (largest fragmentation
    <= ``fragmentation`` threshold; ``inf`` = reported only, the fitted default) and the segmentation is as sure of
    its bones as on hands (1 - confidence <= ``segmentation_uncertainty`` threshold; the confidence is the mean
    largest class probability over the bone pixels, a calibrated version of the fixed ``min_confidence`` QC flag)."""

    name = "anatomy"

    def check(self, result: dict, data: Mapping, index: int | None) -> dict:
        g = self.gates
        layout = result["layout"]
        z, worst = g.layout.score(layout)
        found = np.asarray(layout["present"], bool)
        frag = float(np.nanmax(np.where(found, layout["fragmentation"], np.nan))) if found.any() else float("inf")
        t_z, t_f = g.thresholds["layout"], g.thresholds.get("fragmentation", float("inf"))
        t_u = g.thresholds.get("segmentation_uncertainty", float("inf"))
        unc = 1.0 - float(result["confidence"]) if found.any() else float("inf")
        reasons = []
        if not math.isfinite(z):
            reasons.append(f"only {int(found.sum())} bones found: too few to check a hand's layout")
        elif z > t_z:
            reasons.append(f"the bones are not laid out like a hand (layout score {z:.1f} > {t_z:.1f}; most atypical: "
                           f"{worst})")
        if math.isfinite(frag) and frag > t_f:
            names = [b for b, ok, f in zip(BONES, found, layout["fragmentation"]) if ok and f > t_f]
            reasons.append(f"fragmented bone masks ({', '.join(names)}: {100 * frag:.0f} % outside the main part)")
        if math.isfinite(unc) and unc > t_u:
            reasons.append(f"the segmentation is unsure where the bones are (uncertainty {unc:.3f} > {t_u:.3f})")
        return _record(self.name, not reasons, "; ".join(reasons) or "hand layout", layout_score=z,
                       layout_threshold=t_z, fragmentation=frag, fragmentation_threshold=t_f,
                       segmentation_uncertainty=unc, segmentation_uncertainty_threshold=t_u)


class FeatureOODGated(_LearnedGate):
    """Gate 3: the bone patches' encoder features are close to the training bones (score <= ``features``)."""

    name = "features"

    def check(self, result: dict, data: Mapping, index: int | None) -> dict:
        g = self.gates
        feats = result.get("bone_features")
        t = g.thresholds["features"]
        if feats is None or len(result["bones_found"]) == 0:
            return _record(self.name, False, "no bone patch to compare with the training bones", feature_score=None,
                           feature_threshold=t)
        score = g.features.score(feats, result["bones_found"])
        logits = result.get("logits")
        energy = float(np.mean(energy_score(logits))) if logits is not None and len(logits) else None
        passed = score <= t
        msg = ("bone patches like the training bones" if passed else
               f"the bone patches are unlike the training radiographs (feature score {score:.2f} > {t:.2f})")
        return _record(self.name, passed, msg, feature_score=score, feature_threshold=t, energy=energy)
