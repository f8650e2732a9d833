"""Synthetic screening results for the gate tests: 7-bone label maps (a hand, or its bones scattered) and Gaussian
encoder features per bone, shaped as :class:`~monai_osteo.inferers.HandScreeningInferer` returns them."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

from monai_osteo.data.labels import BONE_LABELS, BONES
from monai_osteo.metrics.anatomy import HandLayoutModel, measure_bone_layout
from monai_osteo.metrics.ood import BoneFeatureOOD
from monai_osteo.transforms.screening_gates import ScreeningGates

SIZE = 128  # label map side (the segmentation's working resolution)
FEATURE_DIM = 8
# canonical right hand, units of about a hand length: (row, col) centre, half-length, half-width, angle of the long
# axis from the row axis. Radius and ulna proximal (large row), five metacarpals fanning distally, M1 on the radius
# side, short and angled outwards.
CANON = {
    "ulna": ((0.30, -0.16), 0.20, 0.035, 0.0),
    "radius": ((0.30, 0.06), 0.20, 0.05, 0.0),
    "M1": ((-0.12, 0.30), 0.09, 0.035, -0.5),
    "M2": ((-0.30, 0.15), 0.15, 0.032, -0.15),
    "M3": ((-0.32, 0.03), 0.15, 0.032, 0.0),
    "M4": ((-0.30, -0.09), 0.13, 0.03, 0.12),
    "M5": ((-0.26, -0.20), 0.11, 0.03, 0.25),
}
# per-bone feature means of the "training bones" (fixed, so every module draws from the same distribution)
FEATURE_MEANS = np.random.default_rng(1234).normal(0.0, 3.0, (len(BONES), FEATURE_DIM))
THRESHOLDS = {"layout": 3.0, "fragmentation": 0.05, "features": 0.7}


def draw(bones: dict, size: int = SIZE) -> np.ndarray:
    """uint8 label map of filled ellipses ``{name: ((row, col) px, half-length px, half-width px, angle)}``."""
    rr, cc = np.mgrid[:size, :size].astype(np.float64)
    lab = np.zeros((size, size), np.uint8)
    for name, ((r0, c0), a, b, th) in bones.items():
        dr, dc = rr - r0, cc - c0
        u = dr * np.cos(th) + dc * np.sin(th)
        v = -dr * np.sin(th) + dc * np.cos(th)
        lab[(u / a) ** 2 + (v / b) ** 2 <= 1.0] = BONE_LABELS[name]
    return lab


def hand_labels(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A jittered hand (per-bone position/size/angle noise), rotated, scaled and mirrored (left hands) at random."""
    ang, scale, mirror = rng.uniform(-0.3, 0.3), rng.uniform(0.75, 0.9) * size, bool(rng.random() < 0.5)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    bones = {}
    for name, ((r, c), a, b, th) in CANON.items():
        p = np.array([r, c]) + rng.normal(0, 0.012, 2)
        a, b, th = a * (1 + rng.normal(0, 0.05)), b * (1 + rng.normal(0, 0.05)), th + rng.normal(0, 0.05)
        if mirror:
            p[1], th = -p[1], -th
        bones[name] = (tuple(rot @ p * scale + size / 2), a * scale, b * scale, th + ang)
    return draw(bones, size)


def scattered_labels(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """The seven bones, each on its own cell of a 3 x 3 grid at a random angle: segmented bones, but no hand."""
    bones = {}
    for name, cell in zip(BONES, rng.permutation(9)[:7]):
        r, c = divmod(int(cell), 3)
        bones[name] = (((r + 0.5) * size / 3, (c + 0.5) * size / 3), size / 9, size / 40, rng.uniform(0, np.pi))
    return draw(bones, size)


def bone_features(rng: np.random.Generator, bones, shift: float = 0.0) -> np.ndarray:
    """(n, F) float32 encoder features of the bones' patches: the bone's Gaussian, moved by ``shift`` per dim."""
    idx = [BONES.index(b) for b in bones]
    return (FEATURE_MEANS[idx] + shift + rng.normal(0, 1, (len(idx), FEATURE_DIM))).astype(np.float32)


def screening_result(rng: np.random.Generator, labels: np.ndarray | None = None, shift: float = 0.0,
                     confidence: float = 0.95, area: float = 0.1) -> dict:
    """A result dict shaped like HandScreeningInferer's (the fields the gates, decision and QC read)."""
    labels = hand_labels(rng) if labels is None else labels
    layout = measure_bone_layout(labels)
    found = [b for b, ok in zip(BONES, layout["present"]) if ok]
    logits = rng.normal(0, 1.5, (len(found), 2)).astype(np.float32)
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    return {"bone_probabilities": {b: (float(probs[found.index(b), 1]) if b in found else None) for b in BONES},
            "class_probabilities": probs, "bones_found": found, "confidence": confidence,
            "bone_area_fraction": area, "labels": labels, "logits": logits,
            "bone_features": bone_features(rng, found, shift) if found else None, "layout": layout}


def radiograph(meta: dict | None = None, seed: int = 0, shape=(1, 160, 128)) -> MetaTensor:
    """A plausible gray image in [0, 1] (many levels, full contrast) with LoadRadiograph's meta keys."""
    img = torch.from_numpy(np.random.default_rng(seed).random(shape, dtype=np.float32))
    return MetaTensor(img, meta={"modality": "DX", "body_part": "HAND", "chroma": 0.0, **(meta or {})})


def fit_gates(seed: int = 0, n_hands: int = 20, patches_per_bone: int = 40) -> ScreeningGates:
    rng = np.random.default_rng(seed)
    layout = HandLayoutModel().fit([measure_bone_layout(hand_labels(rng)) for _ in range(n_hands)])
    groups = [b for b in BONES for _ in range(patches_per_bone)]
    features = BoneFeatureOOD().fit(bone_features(rng, groups), groups)
    return ScreeningGates(layout, features, THRESHOLDS, {"note": "test gates"})
