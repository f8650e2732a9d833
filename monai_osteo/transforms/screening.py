"""Post-processing of the hand screening inferer: subject decision (Eq. 10) and quality-control flags.

Both act on the result dicts of :class:`~monai_osteo.inferers.HandScreeningInferer` under ``keys`` (one dict, or
a list of them for a batch), so a config can drop, reorder or replace them (e.g. another threshold or a gate).

- [0] hand_xray_osteoporosis_journal, Eq. 10.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_osteo.data.labels import BONES
from monai_osteo.metrics.quality import describe_qc_flags, missing_bone_names, screening_qc_flags
from monai_osteo.transforms.screening_gates import failed_gates

__all__ = ["ScreeningDecisiond", "ScreeningQCd"]

DECISION_NAMES = {1: "osteoporosis", 0: "no osteoporosis", -1: "no decision (no bone found)"}


class _PerResult(MapTransform, ABC):
    """Apply :meth:`apply` to each result dict under ``keys`` (a dict, or a list of them for a batch)."""

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            many = isinstance(value, (list, tuple))
            d[key] = [self.apply(dict(r)) for r in value] if many else self.apply(dict(value))
        return d

    @abstractmethod
    def apply(self, result: dict) -> dict:
        """The result with this step's fields added."""


class ScreeningDecisiond(_PerResult):
    """Subject probability = mean over the bones found of the class probabilities; decision = class 1 if its mean
    probability >= ``threshold`` (0.5 = argmax of the mean, Eq. 10); -1 when no bone was found.

    Adds ``probability``, ``decision``, ``decision_name``, ``threshold`` to each result. When a screening gate
    (:mod:`monai_osteo.transforms.screening_gates`, run before this step) failed, there is no decision:
    ``decision = -1``, ``decision_name = "no decision: <reasons>"``, ``probability`` NaN and the classifier's
    probability kept as ``probability_ungated`` for audit.
    """

    def __init__(self, keys: KeysCollection = "pred", threshold: float = 0.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}.")
        self.threshold = float(threshold)

    def apply(self, result: dict) -> dict:
        probs = np.asarray(result.get("class_probabilities", []), dtype=float)
        if probs.size:
            p1 = float(probs.mean(0)[1])
            decision = int(p1 >= self.threshold)
        else:
            p1, decision = float("nan"), -1
        name = DECISION_NAMES[decision]
        failed = failed_gates(result)
        out = {**result, "threshold": self.threshold}
        if failed and decision != -1:
            # the probability of a refused image means nothing: kept for audit only, under another key
            out["probability_ungated"], p1, decision = p1, float("nan"), -1
        if failed:
            name = "no decision: " + "; ".join(g["message"] for g in failed)
        return {**out, "probability": p1, "decision": decision, "decision_name": name}


class ScreeningQCd(_PerResult):
    """Quality-control flags (:func:`~monai_osteo.metrics.screening_qc_flags`) and their plain-language messages.

    Adds ``bones_missing``, ``qc_flags``, ``qc_messages`` to each result; the flags and messages of failed screening
    gates (``result["gates"]``) are appended.
    """

    def __init__(self, keys: KeysCollection = "pred", min_confidence: float = 0.8, min_bones_for_hand: int = 4,
                 area_range: Sequence[float] = (0.005, 0.6), allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.qc = {"min_confidence": min_confidence, "min_bones_for_hand": min_bones_for_hand,
                   "area_range": tuple(area_range)}

    def apply(self, result: dict) -> dict:
        found = list(result["bones_found"])
        missing = missing_bone_names(found, BONES)
        flags = screening_qc_flags(found, result["confidence"], result["bone_area_fraction"], expected_bones=len(BONES),
                                   **self.qc)
        messages = describe_qc_flags(flags, missing)
        for gate in failed_gates(result):  # a failed screening gate: its flag and its message
            flags.append(gate["flag"])
            messages.append(gate["message"])
        return {**result, "bones_missing": missing, "qc_flags": flags, "qc_messages": messages}
