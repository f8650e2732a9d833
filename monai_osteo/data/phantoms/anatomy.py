"""Hand anatomy of the phantom: bones and soft tissue as simple solids placed in millimetres.

Canonical frame of a right hand, postero-anterior view: x towards the little finger, y towards the
fingertips, origin at the radio-ulnar joint. Long bones are tapered tubes with flared ends (radius,
ulna, 5 metacarpals, 14 phalanges), carpals are ellipsoids, soft tissue is a union of elliptic
cylinders. ``place_hand`` samples a pose and returns every solid in image millimetres (X right,
Y down), ready for :mod:`monai_osteo.data.phantoms.render`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from monai_osteo.data.labels import BONE_LABELS
from monai_osteo.data.phantoms.subjects import SubjectPhenotype

__all__ = ["Tube", "Ellipsoid", "Hand", "place_hand"]

#: label values of the 7 target bones in every mask (0 = background)


@dataclass(frozen=True)
class Tube:
    """Tapered tube from ``p0`` (proximal) to ``p1`` (distal) with hemispherical caps (millimetres)."""

    name: str
    p0: tuple[float, float]
    p1: tuple[float, float]
    radius: float  # shaft radius
    flare0: float = 0.3  # relative radius increase at the proximal end
    flare1: float = 0.3  # ... at the distal end
    cortical_index: float = 0.4  # at mid-shaft: cortical thickness / outer radius
    trabecular: float = 0.3  # trabecular fraction in the ends
    density: float = 1.0  # cortical density multiplier
    label: int = 0  # target-bone label, 0 = not annotated
    depth: float | None = None  # soft tissue only: half-thickness of the elliptic section


@dataclass(frozen=True)
class Ellipsoid:
    """Carpal bone: ellipsoid with semi-axes ``a`` (along ``angle``), ``b`` in plane and ``c`` in depth."""

    name: str
    center: tuple[float, float]
    a: float
    b: float
    c: float
    angle: float = 0.0  # degrees
    cortical_index: float = 0.15
    trabecular: float = 0.3
    density: float = 1.0
    label: int = 0


@dataclass(frozen=True)
class Hand:
    bones: list
    soft: list
    ring: tuple | None  # (tube of the ring finger phalanx, position along it 0..1) or None
    missing: list
    laterality: str


# metacarpals: (name, base x, base y, angle from +y in degrees, length, shaft radius)
_METACARPALS = [
    ("M1", -20.0, 26.0, -38.0, 44.0, 4.5),
    ("M2", -9.0, 31.0, -5.0, 66.0, 4.3),
    ("M3", 0.5, 32.0, 0.0, 63.0, 4.2),
    ("M4", 9.5, 31.0, 6.0, 56.0, 3.7),
    ("M5", 17.5, 28.0, 13.0, 52.0, 3.7),
]
# phalanges per ray: list of (length, radius); the thumb has two
_PHALANGES = [
    [(31.0, 3.8), (23.0, 3.1)],
    [(40.0, 3.6), (24.0, 3.0), (18.0, 2.5)],
    [(44.0, 3.7), (28.0, 3.1), (19.0, 2.6)],
    [(41.0, 3.5), (26.0, 2.9), (19.0, 2.5)],
    [(33.0, 3.1), (19.0, 2.6), (17.0, 2.3)],
]
_SPREAD = [-12.0, -4.0, 0.0, 4.0, 9.0]  # extra finger angle per unit spread
# carpals: (name, x, y, a, b, angle)
_CARPALS = [
    ("scaphoid", -12.0, 11.0, 8.0, 4.8, 45.0),
    ("lunate", -1.5, 8.5, 6.0, 5.5, 0.0),
    ("triquetrum", 9.0, 10.5, 5.5, 4.8, -20.0),
    ("pisiform", 13.5, 14.5, 3.6, 3.4, 0.0),
    ("trapezium", -18.5, 21.0, 6.0, 5.2, 30.0),
    ("trapezoid", -9.5, 23.0, 4.8, 4.6, 0.0),
    ("capitate", 0.5, 19.5, 5.8, 9.0, 0.0),
    ("hamate", 10.0, 21.0, 5.8, 7.8, -10.0),
]


def _unit(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([np.sin(a), np.cos(a)])


def _canonical_hand(subject: SubjectPhenotype, rng: np.random.Generator) -> tuple[list, list]:
    """Bones and soft tissue of one subject in the canonical frame (before pose)."""
    ci, dens, trab = subject.cortical_index, subject.cortical_density, subject.trabecular_fraction

    def jitter(value: float, rel: float = 0.04) -> float:
        return float(value * (1.0 + rng.normal(0.0, rel)))

    def bone_ci(factor: float) -> float:  # other bones follow M2 with a little independent scatter
        return float(np.clip(ci * factor * (1.0 + rng.normal(0.0, 0.05)), 0.12, 0.85))

    bones: list = []
    soft: list = []
    bones.append(Tube("radius", (-8.0, -140.0), (-8.0, 1.0), jitter(6.8), 0.0, 0.6, bone_ci(0.85), trab, dens, 2))
    bones.append(Tube("ulna", (14.0, -140.0), (14.0, -3.0), jitter(5.0), 0.0, 0.35, bone_ci(0.9), trab, dens, 1))
    for name, x, y, a, b, ang in _CARPALS:
        bones.append(Ellipsoid(name, (x, y), jitter(a), jitter(b), 0.8 * max(a, b), ang, 0.15, trab * 1.1, dens))
    spread = float(rng.uniform(0.3, 1.6))
    for ray, (name, x, y, ang, length, r) in enumerate(_METACARPALS):
        ang = ang + rng.normal(0.0, 1.5)
        base = np.array([x, y])
        head = base + jitter(length, 0.03) * _unit(ang)
        bones.append(Tube(name, tuple(base), tuple(head), jitter(r), 0.45, 0.55, bone_ci(1.0 if ray else 0.95),
                          trab, dens, BONE_LABELS[name]))
        direction = ang + spread * _SPREAD[ray]
        start = head + 2.5 * _unit(direction)
        tip = start
        for k, (plen, pr) in enumerate(_PHALANGES[ray]):
            end = start + jitter(plen, 0.03) * _unit(direction)
            bones.append(Tube(f"P{ray + 1}{k + 1}", tuple(start), tuple(end), jitter(pr), 0.5, 0.35,
                              bone_ci(0.9), trab, dens))
            tip = end
            start = end + 2.0 * _unit(direction)
            direction += rng.normal(0.0, 2.0)
        # finger soft tissue from the metacarpal head to beyond the fingertip
        soft.append(Tube(f"finger{ray + 1}", tuple(head - 12.0 * _unit(ang)), tuple(tip + 3.0 * _unit(direction)),
                         r + 5.5, 0.15, -0.1, depth=r + 5.0))
    soft.append(Tube("palm", (1.0, 30.0), (2.0, 88.0), 34.0, 0.0, -0.05, depth=15.0))
    soft.append(Tube("thenar", (-14.0, 22.0), (-26.0, 50.0), 13.0, 0.0, 0.0, depth=13.0))
    soft.append(Tube("forearm", (3.0, -150.0), (3.0, 26.0), 30.0, 0.0, 0.0, depth=22.0))
    return bones, soft


def _pose(obj, fn, scale: float):
    if isinstance(obj, Tube):
        return replace(obj, p0=tuple(fn(obj.p0)), p1=tuple(fn(obj.p1)), radius=obj.radius * scale,
                       depth=None if obj.depth is None else obj.depth * scale)
    return replace(obj, center=tuple(fn(obj.center)), a=obj.a * scale, b=obj.b * scale, c=obj.c * scale)


def place_hand(subject: SubjectPhenotype, rng: np.random.Generator, field_mm: tuple[float, float],
               ring_p: float = 0.08, missing_p: float = 0.04) -> Hand:
    """Sample anatomy and pose; return solids in image millimetres (X = column, Y = row, Y down).

    Args:
        subject: the subject's phenotype (cortical index, densities, hand size).
        rng: generator for pose and anatomical variation.
        field_mm: (height, width) of the detector field in millimetres.
        ring_p: probability of a ring on the 4th finger.
        missing_p: probability that one target bone (ulna or 5th ray) is absent from the image.
    """
    bones, soft = _canonical_hand(subject, rng)
    missing: list[str] = []
    if rng.random() < missing_p:
        if rng.random() < 0.5:
            missing = ["ulna"]
            bones = [b for b in bones if b.name != "ulna"]
        else:  # ray amputation: 5th metacarpal, its phalanges and finger soft tissue
            missing = ["M5"]
            bones = [b for b in bones if b.name != "M5" and not b.name.startswith("P5")]
            soft = [s for s in soft if s.name != "finger5"]
    left = bool(rng.random() < 0.5)
    theta = np.deg2rad(rng.uniform(-12.0, 12.0) + rng.normal(0.0, 3.0))
    scale = subject.hand_scale
    height, width = field_mm
    origin = np.array([width * (0.5 + rng.uniform(-0.05, 0.05)), height * (0.70 + rng.uniform(-0.04, 0.04))])
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    mirror = -1.0 if left else 1.0

    def to_image(p) -> np.ndarray:
        x, y = p
        q = rot @ np.array([mirror * x, y]) * scale
        return origin + np.array([q[0], -q[1]])

    bones = [_pose(b, to_image, scale) for b in bones]
    # ellipse axis angle: canonical (y up) -> mirrored, rotated -> image (y down) flips its sign
    bones = [replace(b, angle=-(mirror * b.angle + np.rad2deg(theta))) if isinstance(b, Ellipsoid) else b
             for b in bones]
    soft = [_pose(s, to_image, scale) for s in soft]
    ring = None
    if rng.random() < ring_p:
        phalanx = next((b for b in bones if b.name == "P41"), None)
        if phalanx is not None:
            ring = (phalanx, float(rng.uniform(0.3, 0.5)))
    return Hand(bones=bones, soft=soft, ring=ring, missing=missing, laterality="L" if left else "R")
