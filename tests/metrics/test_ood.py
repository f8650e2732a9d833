"""Feature-space OOD scores against explicit oracles; conformal thresholds: formula, bounds and simulated coverage."""

from __future__ import annotations

import io
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

from monai_osteo.metrics.ood import BoneFeatureOOD, calibrate_thresholds, energy_score
from tests.utils import assert_allclose

GROUPS = ("M1", "radius", "ulna")
F = 8


def clusters(rng: np.random.Generator, n_per_group: int = 150, shift: float = 0.0):
    """Gaussian clusters with one shared covariance; fixed class means (seed 0), optional shift of every point."""
    gen = np.random.default_rng(0)
    means = {g: gen.normal(0, 5, F) for g in GROUPS}
    mix = gen.normal(0, 1, (F, F)) / np.sqrt(F) + np.eye(F)
    groups = [g for g in GROUPS for _ in range(n_per_group)]
    x = np.stack([means[g] for g in groups]) + rng.normal(0, 1, (len(groups), F)) @ mix.T + shift
    return x, groups


@pytest.fixture(scope="module")
def fitted():
    x, groups = clusters(np.random.default_rng(1))
    return BoneFeatureOOD().fit(x, groups), x, groups


# -- BoneFeatureOOD ----------------------------------------------------------------------------------------------------
def test_distances_match_explicit_oracle(fitted):
    ood, x, groups = fitted
    g = np.asarray(groups)
    mu = {c: x[g == c].mean(0) for c in GROUPS}
    centred = x - np.stack([mu[c] for c in groups])
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    assert ood.classes == sorted(GROUPS) and ood.n_fitted == len(groups)
    assert_allclose(ood.precision, precision, rtol=1e-10)
    fresh, fresh_groups = clusters(np.random.default_rng(2), n_per_group=5)
    fresh_groups = fresh_groups[::-1]  # patches scored against another bone's Gaussian too
    expected = [(v - mu[c]) @ precision @ (v - mu[c]) for v, c in zip(fresh, fresh_groups)]
    assert_allclose(ood.distances(fresh, fresh_groups), expected, rtol=1e-10)
    # tensors (any dtype, with grad) are accepted
    t = torch.tensor(fresh, dtype=torch.float32, requires_grad=True)
    assert_allclose(ood.distances(t, fresh_groups), ood.distances(fresh.astype(np.float32), fresh_groups), rtol=1e-12)


def test_in_distribution_scores_lower_than_shifted(fitted):
    ood = fitted[0]
    same, groups = clusters(np.random.default_rng(3), n_per_group=40)
    shifted, _ = clusters(np.random.default_rng(3), n_per_group=40, shift=2.0)
    d_same, d_shift = ood.distances(same, groups), ood.distances(shifted, groups)
    assert np.median(d_same) < 2 * F and np.median(d_shift) > 4 * np.median(d_same)
    assert np.mean(d_shift > d_same) > 0.9
    # per radiograph (7 patches each): median d2 / F of in-distribution patches is about 1, log about 0
    for seed in range(5):
        xs, gs = clusters(np.random.default_rng(10 + seed), n_per_group=3)
        xo, _ = clusters(np.random.default_rng(10 + seed), n_per_group=3, shift=2.0)
        s_in, s_out = ood.score(xs, gs), ood.score(xo, gs)
        assert abs(s_in) < 1.0 and s_out > s_in + 1.0
        assert s_in == pytest.approx(np.log(np.median(ood.distances(xs, gs)) / F))


def test_score_uses_the_median(fitted):
    ood = fitted[0]
    xs, gs = clusters(np.random.default_rng(4), n_per_group=3)  # 9 patches
    base = ood.score(xs, gs)
    one_far = xs.copy()
    one_far[0] += 1e3
    assert ood.distances(one_far, gs)[0] > 1e4
    assert abs(ood.score(one_far, gs) - base) < 0.5  # one odd patch moves the median by one rank at most
    most_far = xs.copy()
    most_far[:6] += 1e3
    assert ood.score(most_far, gs) > base + 5.0


def test_no_patches_score_inf(fitted):
    ood = fitted[0]
    assert ood.score(np.zeros((0, F)), []) == float("inf")
    assert ood.distances(np.zeros((0, F)), []).shape == (0,)


def test_errors(fitted):
    ood, x, groups = fitted
    d = ood.distances(x[:2], ["M1", "M5"])  # a bone never seen in training: unlike any training bone
    assert np.isfinite(d[0]) and d[1] == np.inf
    with pytest.raises(ValueError, match=r"features must be \(N, 8\).*another encoder"):
        ood.distances(x[:2, :5], ["M1", "ulna"])
    with pytest.raises(ValueError, match=r"features must be \(N, 8\)"):
        ood.distances(x[0], ["M1"])
    with pytest.raises(RuntimeError, match="not fitted"):
        BoneFeatureOOD().distances(x[:2], groups[:2])
    with pytest.raises(RuntimeError, match="not fitted"):
        BoneFeatureOOD().state_dict()
    with pytest.raises(ValueError, match="one group per row"):
        BoneFeatureOOD().fit(x, groups[:-1])
    with pytest.raises(ValueError, match="at least 2 patches"):
        BoneFeatureOOD().fit(x[:2], ["M1", "M2"])


def test_a_group_with_one_patch_is_not_modelled_and_scores_inf():
    x = np.random.default_rng(0).normal(size=(21, 4))
    ood = BoneFeatureOOD().fit(x, ["M1"] * 10 + ["M2"] * 10 + ["M3"])
    assert ood.classes == ["M1", "M2"] and ood.dropped == ["M3"]
    d = ood.distances(x[:2], ["M1", "M3"])
    assert np.isfinite(d[0]) and d[1] == np.inf
    again = BoneFeatureOOD().load_state_dict(ood.state_dict())
    assert again.dropped == ["M3"]


def test_distances_reject_row_group_count_mismatch(fitted):
    ood, x, _ = fitted
    with pytest.raises(ValueError, match="one row per group"):
        ood.distances(x[:1], ["M1", "radius", "ulna"])
    with pytest.raises(ValueError, match="one row per group"):
        ood.distances(x[:3], ["M1"])


def test_state_dict_round_trip(fitted):
    ood, _, _ = fitted
    state = ood.state_dict()
    assert isinstance(state["means"], torch.Tensor) and isinstance(state["precision"], torch.Tensor)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    restored = BoneFeatureOOD().load_state_dict(torch.load(buf))
    assert restored.classes == ood.classes and restored.n_fitted == ood.n_fitted
    xs, gs = clusters(np.random.default_rng(5), n_per_group=4)
    np.testing.assert_array_equal(restored.distances(xs, gs), ood.distances(xs, gs))
    assert restored.score(xs, gs) == ood.score(xs, gs)


# -- calibrate_thresholds ----------------------------------------------------------------------------------------------
def _k(n: int, rate: float, m: int) -> int:
    return math.ceil((n + 1) * (1 - Fraction(str(rate)) / m))


@pytest.mark.parametrize("n, rate, m", [(100, 0.05, 1), (99, 0.05, 1), (500, 0.05, 2), (200, 0.1, 3), (60, 0.2, 2),
                                        (1000, 0.01, 2), (39, 0.05, 2)])
def test_threshold_is_kth_smallest(n, rate, m):
    rng = np.random.default_rng(n)
    scores = {f"s{j}": rng.standard_t(3, n) for j in range(m)}
    out = calibrate_thresholds(scores, rate)
    k = _k(n, rate, m)
    assert k <= n and out["guaranteed"] and out["bound"] == rate and out["false_rejection_rate"] == rate
    for name, v in scores.items():
        assert out["k"][name] == k and out["n"][name] == n
        assert out["thresholds"][name] == np.sort(v)[k - 1]
        assert out["median"][name] == np.median(v)
    refused = np.any([v > out["thresholds"][s] for s, v in scores.items()], 0)
    assert out["empirical_rejection_rate"] == refused.mean()


@pytest.mark.parametrize("n, rate, m", [(10, 0.05, 2), (38, 0.05, 2), (18, 0.05, 1), (5, 0.1, 3)])
def test_small_sets_are_not_guaranteed(n, rate, m):
    rng = np.random.default_rng(n)
    scores = {f"s{j}": rng.normal(size=n) for j in range(m)}
    out = calibrate_thresholds(scores, rate)
    assert _k(n, rate, m) > n and not out["guaranteed"]
    assert all(out["thresholds"][s] == v.max() for s, v in scores.items())
    assert out["bound"] == pytest.approx(m / (n + 1))
    assert out["empirical_rejection_rate"] == 0.0


def test_mixed_sample_sizes_bound():
    rng = np.random.default_rng(0)
    big, small = rng.normal(size=200), rng.normal(size=200)
    small[10:] = np.nan  # 10 finite values: k = ceil(11 * 0.975) = 11 > 10
    out = calibrate_thresholds({"big": big, "small": small}, 0.05)
    assert out["n"] == {"big": 200, "small": 10} and out["k"] == {"big": 196, "small": 11}
    assert not out["guaranteed"]
    assert out["bound"] == pytest.approx(0.05 / 2 + 1 / 11)
    assert out["thresholds"]["small"] == small[:10].max()


def test_non_finite_values_are_refused_not_calibrated():
    rng = np.random.default_rng(1)
    a, b = rng.gamma(2.0, size=300), rng.lognormal(size=300)
    a_bad, b_bad = a.copy(), b.copy()
    a_bad[[3, 50, 70]] = [np.inf, np.nan, np.inf]
    b_bad[[50, 120]] = [-np.inf, np.nan]  # -inf is not finite either: refused
    out = calibrate_thresholds({"a": a_bad, "b": b_bad}, 0.05)
    assert out["n"] == {"a": 297, "b": 298} and out["k"] == {"a": _k(297, 0.05, 2), "b": _k(298, 0.05, 2)}
    for name, v in (("a", a_bad), ("b", b_bad)):
        assert out["thresholds"][name] == np.sort(v[np.isfinite(v)])[out["k"][name] - 1]
    assert out["median"]["a"] == np.median(a_bad[np.isfinite(a_bad)])
    refused = ~np.isfinite(a_bad) | ~np.isfinite(b_bad) | (a_bad > out["thresholds"]["a"]) | (
        b_bad > out["thresholds"]["b"])
    assert refused[[3, 50, 70, 120]].all()
    assert out["empirical_rejection_rate"] == pytest.approx(refused.mean())


def test_simulated_false_rejection_rate():
    """Calibrate on n in-distribution samples, refuse fresh ones when any score exceeds its threshold."""
    n, rate, rates = 500, 0.05, []
    for seed in range(20):
        rng = np.random.default_rng(seed)

        def draw(size, rng=rng):
            common = rng.normal(size=size)  # two correlated, heavy-tailed scores
            return {"feature": np.exp(common + rng.normal(size=size)), "layout": rng.standard_t(2, size) + common}

        out = calibrate_thresholds(draw(n), rate)
        assert out["guaranteed"] and out["bound"] == rate
        fresh = draw(4000)
        rates.append(np.mean(np.any([fresh[s] > t for s, t in out["thresholds"].items()], 0)))
    assert np.mean(rates) <= rate + 0.0075
    assert np.mean(rates) >= rate / 2  # the Bonferroni split is conservative, not vacuous


@pytest.mark.parametrize("rate", [0.0, 0.5, -0.1, 1.0, float("nan")])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="false_rejection_rate must be in"):
        calibrate_thresholds({"a": np.arange(100.0)}, rate)


def test_too_few_finite_values_leave_the_score_uncalibrated_and_refusing():
    cal = calibrate_thresholds({"a": [1.0, 2.0, 3.0, 4.0, np.nan, np.inf], "b": np.arange(6.0)}, 0.1)
    assert cal["uncalibrated"] == ["a"] and cal["thresholds"]["a"] == -np.inf and not cal["guaranteed"]
    assert cal["empirical_rejection_rate"] == 1.0 and cal["median"]["a"] is None
    with pytest.raises(ValueError, match="scores must map"):
        calibrate_thresholds({}, 0.1)
    with pytest.raises(ValueError, match="same lengths"):
        calibrate_thresholds({"a": np.arange(6.0), "b": np.arange(7.0)}, 0.1)
    assert calibrate_thresholds({"a": [1.0, 2.0, 3.0, 4.0, 5.0, np.nan]}, 0.1)["n"] == {"a": 5}


# -- energy_score ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_energy_matches_logsumexp(temperature):
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5
    expected = -temperature * torch.logsumexp(logits / temperature, 1)
    out = energy_score(logits, temperature)
    assert isinstance(out, np.ndarray) and out.shape == (6,) and out.dtype == np.float64
    assert_allclose(out, expected, rtol=1e-12)
    assert_allclose(energy_score(logits.numpy(), temperature), expected, rtol=1e-12)
    assert_allclose(energy_score(logits.float(), temperature), expected, rtol=1e-6)


def test_energy_orders_confident_below_flat():
    confident = torch.tensor([[20.0, 0.0, 0.0]])
    flat = torch.tensor([[1.0, 1.0, 1.0]])
    assert energy_score(confident)[0] < energy_score(flat)[0]
    assert energy_score(flat)[0] == pytest.approx(-(1.0 + np.log(3.0)))
    assert energy_score(torch.zeros(0, 3)).shape == (0,)


def test_energy_errors():
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        energy_score(torch.zeros(4))
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        energy_score(np.zeros((2, 3, 4)))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            energy_score(torch.zeros(2, 3), bad)
