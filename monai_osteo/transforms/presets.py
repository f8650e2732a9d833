"""The hand paper's per-view augmentation and the bone-patch preprocessing, as MONAI factories bundles reference.

Rotation ±30°, translation ±10% of width and height, horizontal and vertical flips, brightness and
contrast 50–150% [0]; applied to each multi-crop view separately (see
:class:`~monai_osteo.transforms.multicrop.array.RandConstrainedMultiCrop`). Bundle config::

    "view_transform": {"_target_": "monai_osteo.transforms.presets.hand_view_augmentation", "spatial_size": 224}

- [0] hand_xray_osteoporosis_journal, §"Multi-crop data augmentation".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    EnsureTyped,
    Identity,
    Identityd,
    NormalizeIntensity,
    NormalizeIntensityd,
    RandAffine,
    RandAffined,
    RandFlip,
    RandFlipd,
    RandScaleIntensity,
    RandScaleIntensityd,
    RandScaleIntensityFixedMean,
    RandScaleIntensityFixedMeand,
    Resize,
    Resized,
)
from monai.utils import ensure_tuple_rep

__all__ = [
    "PATCH_NORMALIZATIONS",
    "bone_patch_intensity",
    "bone_patch_intensityd",
    "bone_patch_preprocessingd",
    "bone_patch_resize",
    "hand_view_augmentation",
    "hand_view_augmentationd",
]

#: the one resize of a bone patch to the classifier's input: probe training, evaluation and screening alike
_PATCH_RESIZE = {"mode": "bilinear", "anti_aliasing": True}

#: intensity normalisations of a bone patch before SSL views, probe, evaluation and screening (see
#: :func:`bone_patch_intensity`)
PATCH_NORMALIZATIONS = (None, "bone_zscore")


def _check_normalization(normalization: str | None) -> None:
    if normalization not in PATCH_NORMALIZATIONS:
        raise ValueError(f"patch normalization must be one of {PATCH_NORMALIZATIONS}, got {normalization!r}; "
                         "use null (the cached [0, 1] display values) or 'bone_zscore'.")


def bone_patch_intensity(normalization: str | None = None) -> NormalizeIntensity | Identity:
    """The intensity normalisation of a (1, s, s) bone patch, by name.

    - ``None``: none; the patch keeps the radiograph's display values in [0, 1].
    - ``"bone_zscore"``: MONAI ``NormalizeIntensity(nonzero=True)``: the bone (non-zero) pixels of each patch
      are standardised to mean 0, std 1; the zero background stays 0. A radiograph's display window (exposure,
      auto-ranging) scales and shifts all its pixel values, which moves every bone's intensity statistics far
      more than bone density does; the standardisation removes that per-image affine change and keeps the shape
      of the bone's intensity distribution (cortex vs. medulla) and its texture.

    Args:
        normalization: one of :data:`PATCH_NORMALIZATIONS`.
    """
    _check_normalization(normalization)
    return Identity() if normalization is None else NormalizeIntensity(nonzero=True)


def bone_patch_intensityd(keys: KeysCollection, normalization: str | None = None) -> NormalizeIntensityd | Identityd:
    """Dictionary version of :func:`bone_patch_intensity`."""
    _check_normalization(normalization)
    return Identityd(keys) if normalization is None else NormalizeIntensityd(keys, nonzero=True)


def bone_patch_resize(patch_size: int, normalization: str | None = None) -> Compose:
    """(1, s, s) bone patch -> (1, patch_size, patch_size): :func:`bone_patch_intensity`, then bilinear resize with
    anti-aliasing (screening's path; the probe's is :func:`bone_patch_preprocessingd`)."""
    return Compose([bone_patch_intensity(normalization), Resize((int(patch_size), int(patch_size)), **_PATCH_RESIZE)])


def bone_patch_preprocessingd(keys: KeysCollection, patch_size: int, normalization: str | None = None) -> Compose:
    """Cached patch path -> float32 (1, patch_size, patch_size) tensor: the probe's and the evaluation's path.

    ``LoadBonePatchd`` -> :func:`bone_patch_intensityd` -> ``Resized`` (as :func:`bone_patch_resize`) ->
    ``EnsureTyped`` (float32, no metadata).
    """
    from monai_osteo.data.readers.patches import LoadBonePatchd

    size = (int(patch_size), int(patch_size))
    return Compose([LoadBonePatchd(keys=keys), bone_patch_intensityd(keys, normalization),
                    Resized(keys=keys, spatial_size=size, **_PATCH_RESIZE),
                    EnsureTyped(keys=keys, dtype=torch.float32, track_meta=False)])


def _settings(
    spatial_size: int | Sequence[int],
    prob: float,
    flip_prob: float,
    rotate_deg: float,
    translate_frac: float,
    brightness: Sequence[float],
    contrast: Sequence[float],
) -> dict:
    size = ensure_tuple_rep(spatial_size, 2)
    if len(size) != 2 or min(int(s) for s in size) < 1:
        raise ValueError(f"spatial_size must be a positive int or (height, width) of the views, got {spatial_size!r}.")
    for name, p in (("prob", prob), ("flip_prob", flip_prob)):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}.")
    if float(rotate_deg) < 0 or not 0.0 <= float(translate_frac) < 1.0:
        raise ValueError(
            f"rotate_deg must be >= 0 and translate_frac in [0, 1), got {rotate_deg!r} and {translate_frac!r}."
        )
    for name, r in (("brightness", brightness), ("contrast", contrast)):
        if len(r) != 2 or not 0.0 <= float(r[0]) <= float(r[1]):
            raise ValueError(f"{name} must be a (min, max) factor pair, 0 <= min <= max, e.g. (0.5, 1.5), got {r!r}.")
    return {
        "rotate_range": (math.radians(float(rotate_deg)),),
        "translate_range": tuple(float(translate_frac) * int(s) for s in size),
        "brightness": (float(brightness[0]) - 1.0, float(brightness[1]) - 1.0),
        "contrast": (float(contrast[0]) - 1.0, float(contrast[1]) - 1.0),
    }


def hand_view_augmentation(
    spatial_size: int | Sequence[int] = 224,
    prob: float = 1.0,
    flip_prob: float = 0.5,
    rotate_deg: float = 30.0,
    translate_frac: float = 0.1,
    brightness: Sequence[float] = (0.5, 1.5),
    contrast: Sequence[float] = (0.5, 1.5),
    padding_mode: str = "zeros",
) -> Compose:
    """Array preset for one (C, H, W) view of ``spatial_size``.

    ``RandAffine`` (rotation uniform in ±``rotate_deg``, translation uniform in ±``translate_frac`` of
    height and width, one resampling), ``RandFlip`` on each spatial axis, ``RandScaleIntensity`` (brightness:
    ``v * b``) and ``RandScaleIntensityFixedMean`` (contrast: ``(v - mean) * c + mean``), with ``b`` and ``c``
    uniform in the given factor ranges. MetaTensor metadata is kept; the output is float32 (MONAI's
    ``RandAffine`` resamples in float32), the dtype of the views SSL backbones take.

    Args:
        spatial_size: (H, W) of the views it receives; translation is in pixels of this size, so build one
            preset per view size (224 for global, 96 for local views).
        prob: probability of the affine and of each intensity change.
        flip_prob: probability of each flip.
        rotate_deg: maximum rotation in degrees.
        translate_frac: maximum translation as a fraction of height and width.
        brightness: (min, max) brightness factor.
        contrast: (min, max) contrast factor.
        padding_mode: ``grid_sample`` padding; "zeros" matches the zero background of bone patches.

    Returns:
        a randomizable ``monai.transforms.Compose``.

    - [0] hand_xray_osteoporosis_journal, §"Multi-crop data augmentation".
    """
    s = _settings(spatial_size, prob, flip_prob, rotate_deg, translate_frac, brightness, contrast)
    return Compose(
        [
            RandAffine(
                prob=prob,
                rotate_range=s["rotate_range"],
                translate_range=s["translate_range"],
                padding_mode=padding_mode,
            ),
            RandFlip(prob=flip_prob, spatial_axis=0),
            RandFlip(prob=flip_prob, spatial_axis=1),
            RandScaleIntensity(factors=s["brightness"], prob=prob, dtype=None),
            RandScaleIntensityFixedMean(prob=prob, factors=s["contrast"], fixed_mean=True, dtype=None),
        ]
    )


def hand_view_augmentationd(
    keys: KeysCollection,
    spatial_size: int | Sequence[int] = 224,
    prob: float = 1.0,
    flip_prob: float = 0.5,
    rotate_deg: float = 30.0,
    translate_frac: float = 0.1,
    brightness: Sequence[float] = (0.5, 1.5),
    contrast: Sequence[float] = (0.5, 1.5),
    padding_mode: str = "zeros",
    mode: str | Sequence[str] = "bilinear",
    intensity_keys: KeysCollection | None = None,
) -> Compose:
    """Dictionary preset: one geometric draw shared by all ``keys`` of a view.

    Args:
        keys: keys of the views (image, and e.g. a mask).
        spatial_size, prob, flip_prob, rotate_deg, translate_frac, brightness, contrast, padding_mode: as in
            :func:`hand_view_augmentation`.
        mode: affine interpolation per key (``"nearest"`` for label maps).
        intensity_keys: keys that get brightness/contrast changes; defaults to the first key.

    Returns:
        a randomizable ``monai.transforms.Compose`` of dictionary transforms.
    """
    s = _settings(spatial_size, prob, flip_prob, rotate_deg, translate_frac, brightness, contrast)
    keys = ensure_tuple_rep(keys, 1) if isinstance(keys, str) else tuple(keys)
    ikeys = keys[:1] if intensity_keys is None else intensity_keys
    return Compose(
        [
            RandAffined(
                keys,
                prob=prob,
                rotate_range=s["rotate_range"],
                translate_range=s["translate_range"],
                padding_mode=padding_mode,
                mode=mode,
            ),
            RandFlipd(keys, prob=flip_prob, spatial_axis=0),
            RandFlipd(keys, prob=flip_prob, spatial_axis=1),
            RandScaleIntensityd(ikeys, factors=s["brightness"], prob=prob, dtype=None),
            RandScaleIntensityFixedMeand(ikeys, prob=prob, factors=s["contrast"], fixed_mean=True, dtype=None),
        ]
    )
