"""Input plausibility: a radiograph-like image passes; each rule refuses alone, with its own message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_osteo.metrics.plausibility import DEFAULT_BODY_PARTS, DEFAULT_MODALITIES, input_plausibility


def radiograph(h: int = 256, w: int = 256, seed: int = 0) -> np.ndarray:
    """A smooth gray ramp with noise, quantised to 16 bits, in [0, 1]."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[:h, :w]
    x = 0.2 + 0.6 * (rr / h + cc / w) / 2 + 0.05 * np.sin(rr / 17.0) + rng.normal(0, 0.03, (h, w))
    return np.round(np.clip(x, 0, 1) * 65535) / 65535


def ten_levels() -> np.ndarray:
    x = radiograph()
    return np.floor((x - x.min()) / (x.max() - x.min()) * 10).clip(0, 9) / 9


def mostly_one_value() -> np.ndarray:
    x = radiograph()
    mask = np.random.default_rng(1).random(x.shape) < 0.9
    x[mask] = 0.5
    return x


def low_contrast() -> np.ndarray:
    """Nearly flat: 99 % of the pixels within 2 % of the range set by a few outliers."""
    x = 0.5 + 0.02 * (radiograph() - 0.5)
    x[0, :20] = 0.0
    x[-1, :20] = 1.0
    return x


def only(reasons: list[str], text: str) -> bool:
    return len(reasons) == 1 and text in reasons[0]


def test_plausible_radiograph_passes():
    x = radiograph()
    assert len(np.unique(x)) > 1000
    assert input_plausibility(x, {}) == []
    assert input_plausibility(x) == []
    assert input_plausibility(x, None) == []
    assert input_plausibility(x, {"modality": "DX", "body_part": "HAND", "chroma": 0.0}) == []
    assert input_plausibility(radiograph(128, 384)) == []  # the limits themselves pass
    assert input_plausibility(x, {"chroma": 0.02}) == []


@pytest.mark.parametrize("modality", ["CR", "DX", "RG", "DR", "cr", " DX ", "", None])
def test_modality_passes(modality):
    assert input_plausibility(radiograph(), {"modality": modality}) == []


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "OT"])
def test_modality_refused(modality):
    reasons = input_plausibility(radiograph(), {"modality": modality})
    assert only(reasons, f"DICOM modality {modality} is not a projection radiograph")
    assert ", ".join(DEFAULT_MODALITIES) in reasons[0]
    assert input_plausibility(radiograph(), {"modality": modality}, modalities=(modality.lower(),)) == []


@pytest.mark.parametrize("part", ["Hand", "WRIST", "upper extremity", "UPPER_EXTREMITY", "Hand-Wrist", "bone age", "",
                                  None])
def test_body_part_passes(part):
    assert input_plausibility(radiograph(), {"body_part": part}) == []


@pytest.mark.parametrize("part", ["CHEST", "knee", "SKULL"])
def test_body_part_refused(part):
    assert only(input_plausibility(radiograph(), {"body_part": part}), f"DICOM body part {part} is not a hand")
    assert input_plausibility(radiograph(), {"body_part": part}, body_parts=(*DEFAULT_BODY_PARTS, part)) == []


def test_chroma():
    assert only(input_plausibility(radiograph(), {"chroma": 0.1}), "colour image (chroma 0.100")
    assert input_plausibility(radiograph(), {"chroma": 0.1}, max_chroma=0.2) == []
    assert input_plausibility(radiograph(), {"chroma": None}) == []


@pytest.mark.parametrize("shape", [(64, 64), (127, 256), (256, 100)])
def test_too_small(shape):
    reasons = input_plausibility(radiograph(*shape))
    assert only(reasons, f"too small ({shape[0]} x {shape[1]} pixels")
    assert input_plausibility(radiograph(*shape), min_side=min(shape)) == []


@pytest.mark.parametrize("shape", [(128, 1024), (1024, 300)])
def test_aspect(shape):
    reasons = input_plausibility(radiograph(*shape))
    assert only(reasons, "implausible shape") and "aspect ratio above 3" in reasons[0]
    assert input_plausibility(radiograph(*shape), max_aspect=8.0) == []


def test_gray_levels():
    x = ten_levels()
    assert len(np.unique(x)) == 10
    assert only(input_plausibility(x), "only 10 gray levels (at least 64)")
    assert input_plausibility(x, min_gray_levels=10) == []


def test_mode_fraction():
    x = mostly_one_value()
    reasons = input_plausibility(x)
    assert only(reasons, "% of the image is one gray level")
    assert reasons[0].startswith("90 %")
    assert input_plausibility(x, max_mode_fraction=0.95) == []


def test_low_contrast():
    x = low_contrast()
    reasons = input_plausibility(x)
    assert only(reasons, "almost no contrast")
    assert input_plausibility(x, min_contrast=0.01) == []
    assert input_plausibility(0.5 + 0.02 * (radiograph() - 0.5)) == []  # contrast is relative to the image's range


def test_blank_image_fails_range_rules():
    reasons = input_plausibility(np.zeros((256, 256)))
    assert len(reasons) == 2 and "only 1 gray levels" in reasons[0] and reasons[1].startswith("100 %")


def test_several_rules_report_together():
    reasons = input_plausibility(ten_levels()[:64, :64], {"modality": "CT", "body_part": "CHEST", "chroma": 0.5})
    assert [r.split(" ")[0] for r in reasons] == ["DICOM", "DICOM", "colour", "too", "only"]


@pytest.mark.parametrize("make", [radiograph, ten_levels, mostly_one_value, low_contrast, lambda: radiograph(64, 64),
                                  lambda: radiograph(128, 1024)])
def test_layout_and_type_independent(make):
    x = make()
    expected = input_plausibility(x)
    for variant in (x[None], torch.from_numpy(x), torch.from_numpy(x)[None], torch.from_numpy(x.copy()).float(),
                    x.astype(np.float32)[None]):
        assert input_plausibility(variant) == expected


def test_bad_shapes():
    for bad in (np.zeros((3, 256, 256)), np.zeros(256), np.zeros((1, 1, 256, 256))):
        with pytest.raises(ValueError, match=r"image must be \(H, W\) or \(1, H, W\)"):
            input_plausibility(bad)
