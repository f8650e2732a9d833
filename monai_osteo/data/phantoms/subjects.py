"""Latent subject model of the phantom hand cohort: demographics, bone mineral density, bone phenotype.

Mirrors the journal paper's labelled cohort (192 subjects, 88% female, most cases aged 50–79, positive
if the DXA T-score < −2.5, ~28% prevalence). A latent T-score drives the three radiographic signs of
osteoporosis that the phantom renders: thinner cortex (2nd-metacarpal cortical index), lower cortical
density and lower trabecular density/connectivity. Biological scatter keeps the relation imperfect.

- [0] Patel et al., 2020, The 2nd metacarpal cortical index as a simple screening tool for osteopenia.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["SubjectPhenotype", "sample_subject", "sample_cohort_subjects", "T_SCORE_THRESHOLD"]

T_SCORE_THRESHOLD = -2.5
_AGE_GROUPS = np.arange(10, 90, 10)
_AGE_GROUP_P = np.array([0.03, 0.05, 0.07, 0.11, 0.25, 0.26, 0.18, 0.05])
_FEMALE_P = 169 / 192


@dataclass(frozen=True)
class SubjectPhenotype:
    """One subject's latent state; every field is JSON-able."""

    sex: str  # "F" or "M"
    age: int
    t_score: float
    label: int  # 1 = osteoporosis (T < -2.5)
    cortical_index: float  # 2nd-metacarpal cortical index (combined cortical thickness / outer width)
    cortical_density: float  # multiplier of cortical attenuation (1 = young-adult mean)
    trabecular_fraction: float  # projected trabecular bone fraction in cancellous regions
    hand_scale: float  # overall hand size multiplier

    def to_dict(self) -> dict:
        return asdict(self)


def sample_subject(rng: np.random.Generator) -> SubjectPhenotype:
    """Draw one subject from the generative model (unconditioned on label)."""
    female = bool(rng.random() < _FEMALE_P)
    age = int(rng.choice(_AGE_GROUPS, p=_AGE_GROUP_P / _AGE_GROUP_P.sum()) + rng.integers(0, 10))
    slope = 0.077 if female else 0.062
    t_score = float(-0.2 - slope * max(age - 40, 0) + rng.normal(0.0, 1.1))
    # phenotype: each sign follows T with its own biological scatter, so none is a perfect readout
    ci = float(np.clip(0.50 + 0.045 * t_score + rng.normal(0.0, 0.045), 0.18, 0.75))
    cort_density = float(np.clip(1.0 + 0.035 * t_score + rng.normal(0.0, 0.04), 0.7, 1.2))
    trab = float(np.clip(0.30 * (1.0 + 0.10 * t_score) + rng.normal(0.0, 0.03), 0.06, 0.45))
    scale = float(np.clip(rng.normal(1.06 if not female else 0.97, 0.045), 0.82, 1.18))
    return SubjectPhenotype(
        sex="F" if female else "M",
        age=age,
        t_score=round(t_score, 4),
        label=int(t_score < T_SCORE_THRESHOLD),
        cortical_index=ci,
        cortical_density=cort_density,
        trabecular_fraction=trab,
        hand_scale=scale,
    )


def sample_cohort_subjects(n: int, rng: np.random.Generator, prevalence: float | None = 0.28) -> list[SubjectPhenotype]:
    """Draw ``n`` subjects; with ``prevalence`` set, exactly ``round(prevalence * n)`` are positive.

    Subjects are drawn from the generative model and accepted while their class quota is open (a
    case-control style cohort), so the phenotype given the label is the model's, and the prevalence is
    exact rather than a binomial draw. ``prevalence=None`` keeps the model's own (~28%).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}.")
    if prevalence is None:
        return [sample_subject(rng) for _ in range(n)]
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"prevalence must be in [0, 1] or None, got {prevalence!r}.")
    quota = {1: int(round(prevalence * n))}
    quota[0] = n - quota[1]
    out: list[SubjectPhenotype] = []
    while len(out) < n:
        s = sample_subject(rng)
        if quota[s.label] > 0:
            quota[s.label] -= 1
            out.append(s)
    return out
