"""Bone layout measurements against numpy oracles; the hand layout model on synthetic hands and non-hands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from monai_osteo.data.labels import BONE_LABELS, BONES
from monai_osteo.metrics.anatomy import FEATURES_PER_BONE, HandLayoutModel, measure_bone_layout, wilson_hilferty
from monai_osteo.metrics.ood import calibrate_thresholds
from tests.transforms.screening_gate_cases import draw as draw_on
from tests.utils import assert_allclose

SIZE = 192
# canonical right hand in units of about a hand length: (row, col) centre, half-length, half-width, angle of the long
# axis from the row axis. Radius and ulna proximal (large row) and parallel, M1-M5 fanning distally, thumb (M1) on
# the radius side, short and angled outwards.
CANON = {
    "ulna": ((0.45, -0.15), 0.22, 0.035, 0.0),
    "radius": ((0.45, 0.06), 0.22, 0.05, 0.0),
    "M1": ((0.02, 0.30), 0.09, 0.04, -0.5),
    "M2": ((-0.15, 0.15), 0.16, 0.035, -0.15),
    "M3": ((-0.17, 0.03), 0.16, 0.035, 0.0),
    "M4": ((-0.15, -0.08), 0.14, 0.03, 0.12),
    "M5": ((-0.11, -0.18), 0.12, 0.03, 0.25),
}


def draw(bones: dict, size: int = SIZE) -> np.ndarray:
    """Label map of filled ellipses on this module's canvas (see ``screening_gate_cases.draw``)."""
    return draw_on(bones, size)


def random_pose(rng: np.random.Generator) -> tuple:
    """(rotation, scale px/unit, centre px, mirrored) of a hand on the canvas."""
    centre = SIZE / 2 + rng.uniform(-10, 10, 2)
    return rng.uniform(-np.pi, np.pi), rng.uniform(90, 120), centre, bool(rng.random() < 0.5)


def hand_bones(rng: np.random.Generator, pose: tuple | None = None) -> dict:
    """A random hand: per-bone jitter of position, size and angle, then a similarity pose (left hands mirrored)."""
    ang, scale, centre, mirror = random_pose(rng) if pose is None else pose
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    out = {}
    for name, ((r, c), a, b, th) in CANON.items():
        p = np.array([r - 0.15, c]) + rng.normal(0, 0.012, 2)
        a, b, th = a * (1 + rng.normal(0, 0.05)), b * (1 + rng.normal(0, 0.05)), th + rng.normal(0, 0.05)
        if mirror:
            p[1], th = -p[1], -th
        out[name] = (tuple(rot @ p * scale + centre), a * scale, b * scale, th + ang)
    return out


def scattered_bones(rng: np.random.Generator) -> dict:
    """The same seven bones at random positions and angles."""
    return {k: (tuple(rng.uniform(30, SIZE - 30, 2)), a, b, rng.uniform(-np.pi, np.pi))
            for k, (_, a, b, _) in hand_bones(rng).items()}


def permuted_bones(rng: np.random.Generator) -> dict:
    """A hand whose metacarpal labels run M5-M1 instead of M1-M5 (radius and ulna unchanged)."""
    perm = {"M1": "M5", "M5": "M1", "M2": "M4", "M4": "M2"}
    return {perm.get(k, k): v for k, v in hand_bones(rng).items()}


def row_bones(rng: np.random.Generator) -> dict:
    """The seven bones parallel, side by side in a row."""
    step = 25 * rng.uniform(0.8, 1.2)
    bones = hand_bones(rng).items()
    return {k: ((SIZE / 2, 20 + i * step), 0.6 * a, b, 0.0) for i, (k, (_, a, b, _)) in enumerate(bones)}


def z_of(model: HandLayoutModel, label_map: np.ndarray) -> float:
    return model.score(measure_bone_layout(label_map))[0]


@pytest.fixture(scope="module")
def fitted():
    """A model fitted on 60 hands, in-distribution z of 100 calibration hands and its 5 % conformal threshold."""
    rng = np.random.default_rng(0)
    model = HandLayoutModel().fit([measure_bone_layout(draw(hand_bones(rng))) for _ in range(60)])
    cal = np.array([z_of(model, draw(hand_bones(rng))) for _ in range(100)])
    threshold = calibrate_thresholds({"z": cal}, 0.05)["thresholds"]["z"]
    return model, cal, threshold


# -- measure_bone_layout ---------------------------------------------------------------------------------------------
def _oracle(pts: np.ndarray) -> tuple:
    pts = np.asarray(pts, np.float64)
    return pts.mean(0), float(len(pts)), np.cov(pts, rowvar=False) + np.eye(2) / 12.0


def test_measure_matches_numpy_oracle():
    lab = draw({"ulna": ((60, 40), 30, 8, 0.3), "M3": ((120, 130), 25, 6, -1.0)}, size=180)
    lab[150:160, 20:45] = BONE_LABELS["M5"]  # a rectangle
    out = measure_bone_layout(lab)
    assert set(out) == {"present", "centroid", "area", "cov", "fragmentation"}
    assert out["present"].tolist() == [b in ("ulna", "M3", "M5") for b in BONES]
    for name in ("ulna", "M3", "M5"):
        i = BONES.index(name)
        mean, area, cov = _oracle(np.argwhere(lab == BONE_LABELS[name]))
        assert_allclose(out["centroid"][i], mean, rtol=1e-12)
        assert out["area"][i] == area
        assert_allclose(out["cov"][i], cov, rtol=1e-10)
        assert out["fragmentation"][i] == 0.0
    assert_allclose(out["centroid"][BONES.index("M5")], [154.5, 32.0], rtol=1e-12)
    # a rectangle: variance (n^2 - 1) / 12 of a uniform grid (sample covariance: ddof=1) + a pixel's own 1/12
    n_px = 250
    assert_allclose(out["cov"][BONES.index("M5")], np.diag([(99 / 12) * n_px / (n_px - 1) + 1 / 12,
                                                            (624 / 12) * n_px / (n_px - 1) + 1 / 12]), rtol=1e-12)
    for name in ("radius", "M1", "M2", "M4"):
        i = BONES.index(name)
        assert np.isnan(out["centroid"][i]).all() and np.isnan(out["cov"][i]).all()
        assert np.isnan(out["area"][i]) and np.isnan(out["fragmentation"][i])


def test_measure_fragmentation_uses_largest_component():
    lab = np.zeros((100, 100), np.int32)
    lab[10:30, 10:40] = 2  # 600 pixels: the largest component
    lab[60:70, 60:70] = 2  # 100 pixels apart
    lab[80:82, 10:15] = 2  # 10 more
    out = measure_bone_layout(lab, bones=("radius",))
    mean, area, cov = _oracle(np.argwhere(lab[:50] == 2))
    assert out["area"][0] == area == 600
    assert_allclose(out["centroid"][0], mean, rtol=1e-12)
    assert_allclose(out["cov"][0], cov, rtol=1e-12)
    assert_allclose(out["fragmentation"][0], 110 / 710, rtol=1e-12)


def test_measure_components_are_eight_connected():
    lab = np.zeros((40, 40), np.int64)
    lab[5:15, 5:15] = 1
    lab[15:25, 15:25] = 1  # touches the first square only at a corner
    out = measure_bone_layout(lab, bones=("ulna",))
    assert out["area"][0] == 200 and out["fragmentation"][0] == 0.0


def test_measure_bone_order_dtype_and_other_labels():
    lab = np.zeros((50, 60), np.uint8)
    lab[5:20, 5:10] = BONE_LABELS["M5"]
    lab[30:45, 40:50] = BONE_LABELS["ulna"]
    lab[0:3, 50:60] = 9  # not a bone label: ignored
    out = measure_bone_layout(lab, bones=("M5", "ulna", "radius"))
    assert out["present"].tolist() == [True, True, False]
    assert out["area"][:2].tolist() == [75.0, 150.0]
    assert out["centroid"].shape == (3, 2) and out["cov"].shape == (3, 2, 2)
    ref = measure_bone_layout(lab.astype(np.int64))
    assert_allclose(out["centroid"][0], ref["centroid"][BONES.index("M5")])
    empty = measure_bone_layout(np.zeros((8, 8), np.int16))
    assert not empty["present"].any() and np.isnan(empty["area"]).all()


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.float32), np.zeros((10, 10), bool), np.zeros((2, 10, 10), int),
                                 np.zeros(10, int)])
def test_measure_rejects_non_integer_or_non_2d(bad):
    with pytest.raises(ValueError, match="2-D integer label map"):
        measure_bone_layout(bad)


def test_measure_rejects_unknown_bones():
    with pytest.raises(ValueError, match="bones must be among"):
        measure_bone_layout(np.zeros((10, 10), int), bones=("ulna", "scaphoid"))


# -- wilson_hilferty ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [3, 4, 6, 12, 42])
def test_wilson_hilferty_matches_chi2_quantiles(k):
    p = np.array([0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 0.999]) if k >= 6 else np.array([0.2, 0.5, 0.8, 0.95, 0.99, 0.999])
    d2 = stats.chi2.ppf(p, k)
    assert_allclose(wilson_hilferty(d2, k), stats.norm.ppf(stats.chi2.cdf(d2, k)), atol=0.05)


def test_wilson_hilferty_monotone_and_vectorised():
    d2 = np.linspace(0.0, 200.0, 2001)
    for k in (3, 7, 42):
        assert np.all(np.diff(wilson_hilferty(d2, k)) > 0)
    z = wilson_hilferty(np.array([[10.0], [50.0]]), np.array([6, 12, 42]))
    assert z.shape == (2, 3)
    assert_allclose(z[1, 2], wilson_hilferty(50.0, 42))
    assert wilson_hilferty(-3.0, 5) == wilson_hilferty(0.0, 5)  # negative distances clip to 0
    with pytest.raises(ValueError, match="dof must be >= 1"):
        wilson_hilferty(1.0, 0)


# -- HandLayoutModel ---------------------------------------------------------------------------------------------------
def test_held_out_hands_score_low(fitted):
    model, _, threshold = fitted
    assert model.n_fitted == 60 and model.covariance.shape == (42, 42) and model.mean.shape == (42,)
    assert_allclose((model.mean_shape**2).sum(), 1.0)
    assert_allclose(model.mean_shape.mean(0), [0.0, 0.0], atol=1e-12)
    rng = np.random.default_rng(1)
    held_out = np.array([z_of(model, draw(hand_bones(rng))) for _ in range(100)])
    assert np.isfinite(held_out).all()
    assert np.mean(held_out <= threshold) >= 0.9


@pytest.mark.parametrize("make", [scattered_bones, permuted_bones, row_bones], ids=["scattered", "permuted", "row"])
def test_non_hand_layouts_score_far_higher(fitted, make):
    model, cal, _ = fitted
    rng = np.random.default_rng(2)
    ood = np.array([z_of(model, draw(make(rng))) for _ in range(15)])
    assert ood.min() > cal.max() + 5.0, (ood.min(), cal.max())


def test_similarity_transforms_are_absorbed(fitted):
    model, cal, _ = fitted
    rng = np.random.default_rng(3)
    for _ in range(5):
        lab = draw(hand_bones(rng))
        ref = measure_bone_layout(lab)
        z = model.score(ref)[0]
        # exact pixel-grid rotations/reflections: identical features
        for moved in (np.rot90(lab), np.rot90(lab, 3), np.fliplr(lab), np.flipud(np.rot90(lab))):
            assert_allclose(model.features(measure_bone_layout(np.ascontiguousarray(moved))), model.features(ref),
                            rtol=1e-9, atol=1e-9)
        # magnified x2 (each pixel a 2x2 block) and shifted on a larger canvas: almost the same
        big = np.zeros((2 * SIZE + 37, 2 * SIZE + 11), lab.dtype)
        big[30:30 + 2 * SIZE, 5:5 + 2 * SIZE] = np.kron(lab, np.ones((2, 2), lab.dtype))
        assert abs(z_of(model, big) - z) < 0.01
    # the same hand drawn in another pose (rasterised anew): changes little next to the spread of hands
    diffs = []
    for seed in range(15):
        a = hand_bones(np.random.default_rng(100 + seed), pose=(0.3, 100.0, np.array([96.0, 96.0]), False))
        b = hand_bones(np.random.default_rng(100 + seed), pose=(2.0, 115.0, np.array([90.0, 100.0]), True))
        diffs.append(z_of(model, draw(a)) - z_of(model, draw(b)))
    diffs = np.abs(diffs)
    assert np.median(diffs) < 0.5 and diffs.max() < 2.0, diffs
    assert diffs.max() < cal.max() - cal.min()


@pytest.mark.parametrize("robust", [True, False])
def test_hand_with_a_missing_bone_stays_in_range(fitted, robust):
    model = HandLayoutModel(robust=robust).load_state_dict(fitted[0].state_dict())
    model.robust = robust
    rng = np.random.default_rng(4)
    cal = np.array([z_of(model, draw(hand_bones(rng))) for _ in range(40)])
    for _ in range(5):
        lab = draw(hand_bones(rng))
        for v in range(1, 8):
            partial = np.where(lab == v, 0, lab)
            layout = measure_bone_layout(partial)
            assert layout["present"].sum() == 6
            z, worst = model.score(layout)
            assert np.isfinite(z) and z < cal.max() + 1.5, (v, z, cal.max())
            assert worst in BONES and worst != BONES[v - 1]
            # the same through the ``present`` mask
            assert model.score(measure_bone_layout(lab), present=np.arange(1, 8) != v)[0] == pytest.approx(z, abs=1e-9)


def test_too_few_bones_score_inf(fitted):
    model = fitted[0]
    lab = draw(hand_bones(np.random.default_rng(5)))
    three = np.where(lab > 3, 0, lab)
    assert model.score(measure_bone_layout(three)) == (float("inf"), "")
    assert np.isfinite(model.score(measure_bone_layout(np.where(lab > 4, 0, lab)))[0])  # 4 = min_bones
    assert model.score(measure_bone_layout(lab), present=[True, True, True, False, False, False, False]) == (
        float("inf"), "")
    assert model.score(measure_bone_layout(np.zeros((32, 32), np.uint8))) == (float("inf"), "")
    assert np.isnan(model.features(measure_bone_layout(np.where(lab > 2, 0, lab)))).all()  # 2 bones: no alignment
    strict = HandLayoutModel(min_bones=7).load_state_dict({**model.state_dict(), "min_bones": 7})
    assert strict.score(measure_bone_layout(np.where(lab == 7, 0, lab)))[0] == float("inf")


@pytest.mark.parametrize("seed", [6, 7, 8])
@pytest.mark.parametrize("name", BONES)
def test_robust_mode_forgives_one_displaced_bone(fitted, name, seed):
    model, cal, _ = fitted
    plain = HandLayoutModel(robust=False).load_state_dict({**model.state_dict(), "robust": False})
    assert plain.robust is False
    # on a larger canvas, one bone moved 45 px further out from the hand's centre (clear of the other bones)
    hand = hand_bones(np.random.default_rng(seed))
    bones = {k: ((r + 32, c + 32), a, b, th) for k, ((r, c), a, b, th) in hand.items()}
    centre = np.mean([p for p, *_ in bones.values()], 0)
    p, a, b, th = bones[name]
    away = (np.asarray(p) - centre) / np.linalg.norm(np.asarray(p) - centre)
    moved = {**bones, name: (tuple(np.asarray(p) + 45 * away), a, b, th)}
    intact, displaced = measure_bone_layout(draw(bones, 256)), measure_bone_layout(draw(moved, 256))
    assert displaced["present"].all()
    z, worst = model.score(displaced)
    assert worst == name and z < cal.max() + 1.0, (z, worst, cal.max())
    # leaving the moved bone out is exactly the intact hand without it
    without = np.array([b != name for b in BONES])
    assert z == pytest.approx(plain.score(intact, present=without)[0], abs=1e-9)
    assert plain.score(displaced)[0] > cal.max() + 5.0


def test_features_layout(fitted):
    model = fitted[0]
    lab = draw(hand_bones(np.random.default_rng(7)))
    f = model.features(measure_bone_layout(lab))
    assert f.shape == (len(BONES) * FEATURES_PER_BONE,) and np.isfinite(f).all()
    per_bone = f.reshape(len(BONES), FEATURES_PER_BONE)
    assert_allclose(per_bone[:, 4] ** 2 + per_bone[:, 5] ** 2, np.ones(len(BONES)), rtol=1e-12)  # (cos 2θ, sin 2θ)
    g = model.features(measure_bone_layout(np.where(lab == BONE_LABELS["M2"], 0, lab))).reshape(len(BONES), -1)
    assert np.isnan(g[BONES.index("M2")]).all() and np.isfinite(np.delete(g, BONES.index("M2"), 0)).all()


def test_state_dict_round_trip(fitted):
    model = fitted[0]
    state = json.loads(json.dumps(model.state_dict()))  # JSON-saveable
    restored = HandLayoutModel().load_state_dict(state)
    assert restored.bones == model.bones and restored.n_fitted == model.n_fitted
    rng = np.random.default_rng(8)
    for lab in [draw(hand_bones(rng)) for _ in range(3)] + [draw(scattered_bones(rng))]:
        layout = measure_bone_layout(lab)
        assert restored.score(layout) == model.score(layout)


def test_fit_needs_ten_complete_layouts():
    rng = np.random.default_rng(9)
    layouts = [measure_bone_layout(draw(hand_bones(rng))) for _ in range(12)]
    for lay in layouts[:3]:
        lay["present"][2] = False  # incomplete layouts do not count
    with pytest.raises(ValueError, match="at least 10"):
        HandLayoutModel().fit(layouts)
    with pytest.raises(ValueError, match="at least 10"):
        HandLayoutModel().fit([])
    with pytest.raises(ValueError, match="at least 10"):
        HandLayoutModel().fit(layouts[3:])  # 9 complete
    assert HandLayoutModel().fit(layouts[3:] + layouts[:1] + [layouts[5]]).n_fitted == 10


def test_unfitted_and_bad_arguments():
    with pytest.raises(RuntimeError, match="not fitted"):
        HandLayoutModel().features(measure_bone_layout(np.zeros((8, 8), int)))
    with pytest.raises(RuntimeError, match="not fitted"):
        HandLayoutModel().score(measure_bone_layout(draw(hand_bones(np.random.default_rng(10)))))
    with pytest.raises(RuntimeError, match="not fitted"):
        HandLayoutModel().state_dict()
    for bad in (2, 8):
        with pytest.raises(ValueError, match="min_bones must be"):
            HandLayoutModel(min_bones=bad)
