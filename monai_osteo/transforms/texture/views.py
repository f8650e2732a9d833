"""SSL views of a vertebra for SwAV: texture-pool members (TP-SwAV) and, as the baseline, random 3-D crops.

TP-SwAV [0] replaces SwAV's random crops [1] ("conventional random cropping operations that may compromise structural
integrity") by members of the texture pool: two views of a vertebra are two different single-channel volumes drawn
from {CT ROI, Autocorrelation, JointAverage, Contrast, DifferenceAverage}
(:class:`~monai_osteo.transforms.texture.array.TexturePool`). :class:`RandTexturePoolViewsd` draws them;
:class:`RandCropViews3Dd` gives the crop-SwAV baseline views of the CT ROI. Both write lists of plain (1, *size)
tensors, which MONAI's ``list_data_collate`` turns into lists of (B, 1, *size) batches, the layout of
:class:`~monai_osteo.engines.MultiViewSSLTrainer` and ``MultiCropSSLLoss``.

- [0] TP-SwAV: ``papers/vertebral_ct_tpswav_moe.txt`` §2.1, Fig. 1B-C.
- [1] Caron et al., 2020, Unsupervised learning of visual features by contrasting cluster assignments (SwAV).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import TransformBackends, convert_to_tensor, ensure_tuple

__all__ = [
    "RandCropViews3DD",
    "RandCropViews3DDict",
    "RandCropViews3Dd",
    "RandTexturePoolViewsD",
    "RandTexturePoolViewsDict",
    "RandTexturePoolViewsd",
]


def _per_key(name: str, value: str | Sequence[str], keys: tuple) -> tuple:
    """One output key per input key: ``value`` as a tuple whose length must equal ``len(keys)``."""
    out = ensure_tuple(value)
    if len(out) != len(keys) or len(set(out)) != len(out):
        raise ValueError(f"{name} must give one distinct key per input key ({len(keys)}), got {value!r}.")
    return out


def _spatial_axes(spatial_axis: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """``spatial_axis`` as non-negative spatial axis indices of an ``ndim``-D volume."""
    axes = ensure_tuple(spatial_axis)
    if not all(-ndim <= int(a) < ndim for a in axes):
        raise ValueError(f"spatial_axis must index the {ndim} spatial axes (0..{ndim - 1}), got {spatial_axis!r}.")
    return tuple(int(a) % ndim for a in axes)


def _check_prob(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
    return float(value)


def _as_float_tensor(img: object, name: str, min_ndim: int = 2) -> torch.Tensor:
    """``img`` as a plain (not MetaTensor) floating torch tensor on its device."""
    t = convert_to_tensor(img, track_meta=False)
    if not isinstance(t, torch.Tensor) or t.ndim < min_ndim:
        raise ValueError(
            f"{name} must be a channel-first (C, *spatial) array with >= {min_ndim - 1} spatial axes, "
            f"got shape {tuple(getattr(t, 'shape', ()))!r}."
        )
    return t if t.is_floating_point() else t.float()


def _shift_replicate(img: torch.Tensor, shift: Sequence[int]) -> torch.Tensor:
    """Translate the spatial axes of (C, *spatial) ``img`` by integer ``shift`` voxels, replicating the edges.

    ``out[..., x] = img[..., clamp(x - shift)]`` per axis: content moves towards higher indices for positive shifts.
    """
    out = img
    for axis, s in enumerate(shift):
        if s:
            n = out.shape[axis + 1]
            idx = (torch.arange(n, device=img.device) - int(s)).clamp_(0, n - 1)
            out = out.index_select(axis + 1, idx)
    return out


class RandTexturePoolViewsd(Randomizable, MapTransform):
    """TP-SwAV views: ``num_views`` distinct members of a texture pool, each a (1, *spatial) volume.

    ``data[key]`` is a (C, *spatial) pool (C = image + F texture maps, already normalised, e.g. by
    :class:`~monai_osteo.transforms.texture.dictionary.TexturePoold`). Each call draws ``num_views`` distinct channels
    uniformly without replacement (the image is a member like any map) and writes ``data[output_key]``, a list of
    plain float (1, *spatial) tensors (a MONAI DataLoader collates it to a list of (B, 1, *spatial)), and
    ``data[output_key + "_channels"]``, the (num_views,) long tensor of drawn channels. The texture-preserving
    augmentation of wave-2 spec §3.2 is applied independently per view: a flip of ``spatial_axis`` with probability
    ``flip_prob`` and an integer translation in [-max_shift, max_shift] per spatial axis with replicated edges. No
    crops, no resampling and no intensity change, so the texture statistics of the members survive. The source
    entry is kept. One draw is shared by all ``keys`` (their pools must have the same number of channels).

    Args:
        keys: keys of the (C, *spatial) pools.
        output_key: key of the view list, one per key.
        num_views: views per call, 2 <= num_views <= C (with more than two, SwAV takes codes from the first two).
        flip_prob: probability of flipping each view.
        spatial_axis: spatial axis (or axes, flipped together) of the flip; 0 = first spatial axis.
        max_shift: largest translation in voxels, one for all spatial axes or one per axis; 0 = none.
        allow_missing_keys: skip missing keys instead of raising.

    Example::

        views = RandTexturePoolViewsd("pool", "image_global", num_views=2, max_shift=2)
        d = views({"pool": pool})  # d["image_global"]: [(1, H, W, D), (1, H, W, D)]; d["image_global_channels"]

    - [0] TP-SwAV: ``papers/vertebral_ct_tpswav_moe.txt`` §2.1 ("views" = texture-pool members), Fig. 1B.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        keys: KeysCollection = "image",
        output_key: str | Sequence[str] = "image_global",
        num_views: int = 2,
        flip_prob: float = 0.5,
        spatial_axis: int | Sequence[int] = 0,
        max_shift: int | Sequence[int] = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_keys = _per_key("output_key", output_key, self.keys)
        if int(num_views) != num_views or num_views < 2:
            raise ValueError(
                f"num_views must be an integer >= 2 (two views for a swapped prediction), got {num_views!r}."
            )
        self.num_views = int(num_views)
        self.flip_prob = _check_prob("flip_prob", flip_prob)
        self.spatial_axis = spatial_axis
        shifts = ensure_tuple(max_shift)
        if not all(int(s) == s and s >= 0 for s in shifts):
            raise ValueError(f"max_shift must be non-negative integers (voxels), got {max_shift!r}.")
        self.max_shift = tuple(int(s) for s in shifts)
        self._channels = np.zeros(0, dtype=np.int64)
        self._flips = np.zeros(0, dtype=bool)
        self._shifts = np.zeros((0, 0), dtype=np.int64)

    def randomize(self, num_channels: int, spatial_ndim: int) -> None:
        """Draw the channels, flips and shifts of the views of a ``num_channels``-member pool."""
        if not 2 <= self.num_views <= num_channels:
            raise ValueError(
                f"num_views must be between 2 and the pool size C = {num_channels}, got {self.num_views}; "
                f"lower num_views or build a larger pool."
            )
        max_shift = self.max_shift * spatial_ndim if len(self.max_shift) == 1 else self.max_shift
        if len(max_shift) != spatial_ndim:
            raise ValueError(
                f"max_shift must give one value or one per spatial axis ({spatial_ndim}), got {self.max_shift!r}."
            )
        max_shift = np.asarray(max_shift, dtype=np.int64)
        v = self.num_views
        self._channels = self.R.choice(num_channels, v, replace=False).astype(np.int64)
        self._flips = self.R.random_sample(v) < self.flip_prob
        self._shifts = self.R.randint(-max_shift, max_shift + 1, size=(v, spatial_ndim)).astype(np.int64)

    def views(self, pool: torch.Tensor) -> list[torch.Tensor]:
        """The (1, *spatial) views of a (C, *spatial) floating tensor ``pool`` under the last draw."""
        axes = [a + 1 for a in _spatial_axes(self.spatial_axis, pool.ndim - 1)]
        out = []
        for c, flip, shift in zip(self._channels, self._flips, self._shifts):
            view = _shift_replicate(pool[int(c) : int(c) + 1], shift)
            out.append(torch.flip(view, axes) if flip else view.clone())
        return out

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        """
        Args:
            data: mapping whose ``keys`` entries are (C, *spatial) pools (tensor, MetaTensor or numpy).

        Returns:
            a shallow copy of ``data`` with ``output_key`` (list of (1, *spatial) tensors) and
            ``output_key + "_channels"`` ((num_views,) long tensor) added per key.
        """
        d = dict(data)
        pairs = list(self.key_iterator(d, self.output_keys))
        if not pairs:
            return d
        pools = {key: _as_float_tensor(d[key], f"data[{key!r}]") for key, _ in pairs}
        first = pools[pairs[0][0]]
        for key, pool in pools.items():
            if pool.shape[0] != first.shape[0] or pool.ndim != first.ndim:
                raise ValueError(
                    f"data[{key!r}] must have the channels and spatial rank of data[{pairs[0][0]!r}] "
                    f"{tuple(first.shape)!r} (one draw is shared by all keys), got {tuple(pool.shape)!r}."
                )
        self.randomize(first.shape[0], first.ndim - 1)
        for key, out_key in pairs:
            d[out_key] = self.views(pools[key])
            d[f"{out_key}_channels"] = torch.as_tensor(self._channels, dtype=torch.long)
        return d


class RandCropViews3Dd(Randomizable, MapTransform):
    """Crop-SwAV baseline views: random 3-D multi-crops of one channel, resized, flipped, intensity-jittered.

    Channel ``channel`` of the (C, D, H, W) ``data[key]`` gives ``num_global`` global and ``num_local`` local views,
    each drawn the same way from its own scale range and size: a volume fraction ``u ~ U(scale)``, a box of side
    fraction ``u ** (1/3)`` per axis, its aspect jittered by a factor in [1/(1 + aspect_jitter), 1 + aspect_jitter]
    per axis at constant volume (the cube is used if ten jittered draws do not fit, as torchvision's
    ``RandomResizedCrop`` falls back), a uniform position inside the volume, trilinear resizing
    (``align_corners=False``) to the view size, a flip of ``spatial_axis`` with probability ``flip_prob`` and
    ``x * (1 + a) + b`` with ``a ~ U(+-intensity_scale)``, ``b ~ U(+-intensity_shift)``. The view lists (plain
    (1, *size) float tensors) go to ``global_key`` and ``local_key`` (no local list when ``num_local == 0``); the
    source entry is kept. One draw is shared by all ``keys``.

    Written here rather than composed from MONAI's ``RandSpatialCropSamplesd``/``RandScaleCropd`` + ``Resized``
    because those draw each side independently (not a volume fraction, as SwAV's ``RandomResizedCrop`` does) and
    one crop size per call, and the views of one volume need different sizes per view.

    Args:
        keys: keys of the (C, D, H, W) volumes.
        global_key: key of the global view list, one per key.
        local_key: key of the local view list, one per key.
        channel: channel cropped (0 = the image of a texture pool).
        num_global: number of global views (>= 1).
        num_local: number of local views (>= 0).
        global_scale: (min, max) volume fraction of global boxes, in (0, 1].
        local_scale: (min, max) volume fraction of local boxes, in (0, 1].
        global_size: (D, H, W) size of global views (an int = cube); None = the input's spatial size.
        local_size: size of local views; None = half the input size per axis, rounded down, at least 4.
        flip_prob: probability of flipping each view.
        spatial_axis: spatial axis (or axes, flipped together) of the flip; 0 = first spatial axis.
        intensity_scale: largest relative intensity scaling ``a``.
        intensity_shift: largest additive intensity shift ``b``.
        aspect_jitter: largest relative change of a side at constant volume (0 = cubes in voxel fractions).
        allow_missing_keys: skip missing keys instead of raising.

    - [0] TP-SwAV: ``papers/vertebral_ct_tpswav_moe.txt`` §2.1 and Tables 2-3 ("SwAV" rows).
    - [1] Caron et al., 2020, SwAV: multi-crop, 2 global (scale 0.14-1) + local (0.05-0.14) views.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        keys: KeysCollection = "image",
        global_key: str | Sequence[str] = "image_global",
        local_key: str | Sequence[str] = "image_local",
        channel: int = 0,
        num_global: int = 2,
        num_local: int = 4,
        global_scale: Sequence[float] = (0.14, 1.0),
        local_scale: Sequence[float] = (0.05, 0.14),
        global_size: int | Sequence[int] | None = None,
        local_size: int | Sequence[int] | None = None,
        flip_prob: float = 0.5,
        spatial_axis: int | Sequence[int] = 0,
        intensity_scale: float = 0.1,
        intensity_shift: float = 0.1,
        aspect_jitter: float = 0.25,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.global_keys = _per_key("global_key", global_key, self.keys)
        self.local_keys = _per_key("local_key", local_key, self.keys)
        if set(self.global_keys) & set(self.local_keys):
            raise ValueError(f"global_key and local_key must differ, got {global_key!r} and {local_key!r}.")
        if int(num_global) != num_global or num_global < 1 or int(num_local) != num_local or num_local < 0:
            raise ValueError(
                f"num_global must be >= 1 and num_local >= 0 (integers), got {num_global!r}, {num_local!r}."
            )
        self.channel, self.num_global, self.num_local = int(channel), int(num_global), int(num_local)
        self.global_scale = self._check_scale("global_scale", global_scale)
        self.local_scale = self._check_scale("local_scale", local_scale)
        self.global_size = self._check_size("global_size", global_size)
        self.local_size = self._check_size("local_size", local_size)
        self.flip_prob = _check_prob("flip_prob", flip_prob)
        self.spatial_axis = spatial_axis
        _spatial_axes(spatial_axis, 3)
        if intensity_scale < 0 or intensity_shift < 0:
            raise ValueError(
                f"intensity_scale and intensity_shift must be >= 0, got {intensity_scale!r}, {intensity_shift!r}."
            )
        self.intensity_scale, self.intensity_shift = float(intensity_scale), float(intensity_shift)
        if not 0.0 <= aspect_jitter < 1.0:
            raise ValueError(f"aspect_jitter must be in [0, 1), got {aspect_jitter!r}.")
        self.aspect_jitter = float(aspect_jitter)
        self._draws: list[tuple[tuple[int, ...], tuple[int, ...], bool, float, float]] = []

    @staticmethod
    def _check_scale(name: str, scale: Sequence[float]) -> tuple[float, float]:
        s = tuple(float(x) for x in ensure_tuple(scale))
        if len(s) != 2 or not 0.0 < s[0] <= s[1] <= 1.0:
            raise ValueError(f"{name} must be (min, max) volume fractions with 0 < min <= max <= 1, got {scale!r}.")
        return s  # type: ignore[return-value]

    @staticmethod
    def _check_size(name: str, size: int | Sequence[int] | None) -> tuple[int, int, int] | None:
        if size is None:
            return None
        s = (size,) * 3 if isinstance(size, int) else tuple(size)
        if len(s) != 3 or not all(int(x) == x and x >= 1 for x in s):
            raise ValueError(f"{name} must be None, a positive int or 3 positive ints (D, H, W), got {size!r}.")
        return tuple(int(x) for x in s)  # type: ignore[return-value]

    def view_sizes(self, spatial_shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(global, local) output sizes for an input of ``spatial_shape``."""
        gs = tuple(int(n) for n in spatial_shape) if self.global_size is None else self.global_size
        ls = tuple(max(4, int(n) // 2) for n in spatial_shape) if self.local_size is None else self.local_size
        return gs, ls

    def _box(self, shape: Sequence[int], scale: tuple[float, float]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """A random (start, size) box of volume fraction ~ U(scale) inside ``shape``."""
        frac = self.R.uniform(*scale)
        side = frac ** (1.0 / len(shape))
        fracs = np.full(len(shape), side)
        if self.aspect_jitter > 0:
            lim = math.log1p(self.aspect_jitter)
            for _ in range(10):
                log_a = self.R.uniform(-lim, lim, len(shape))
                jittered = side * np.exp(log_a - log_a.mean())
                if np.all(jittered <= 1.0):
                    fracs = jittered
                    break
        size = tuple(int(min(max(round(n * f), 1), n)) for n, f in zip(shape, fracs))
        start = tuple(int(self.R.randint(0, n - s + 1)) for n, s in zip(shape, size))
        return start, size

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw the boxes, flips and intensity changes of all views (global first) of a ``spatial_shape`` volume."""
        self._draws = []
        for v in range(self.num_global + self.num_local):
            start, size = self._box(spatial_shape, self.global_scale if v < self.num_global else self.local_scale)
            flip = bool(self.R.random_sample() < self.flip_prob)
            a = float(self.R.uniform(-self.intensity_scale, self.intensity_scale))
            b = float(self.R.uniform(-self.intensity_shift, self.intensity_shift))
            self._draws.append((start, size, flip, a, b))

    def views(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The (1, *size) views of a (1, D, H, W) floating tensor under the last draw, global views first."""
        gs, ls = self.view_sizes(image.shape[1:])
        axes = [a + 1 for a in _spatial_axes(self.spatial_axis, 3)]
        out = []
        for v, (start, size, flip, a, b) in enumerate(self._draws):
            target = gs if v < self.num_global else ls
            crop = image[(slice(None), *(slice(s, s + n) for s, n in zip(start, size)))]
            if tuple(size) != tuple(target):
                crop = F.interpolate(crop[None], size=target, mode="trilinear", align_corners=False)[0]
            if flip:
                crop = torch.flip(crop, axes)
            out.append(crop * (1.0 + a) + b)
        return out

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        """
        Args:
            data: mapping whose ``keys`` entries are (C, D, H, W) volumes of one spatial shape.

        Returns:
            a shallow copy of ``data`` with the global (and local) view lists added per key.
        """
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        images = {}
        for key in keys:
            img = _as_float_tensor(d[key], f"data[{key!r}]", min_ndim=1)
            if img.ndim != 4 or not -img.shape[0] <= self.channel < img.shape[0]:
                raise ValueError(
                    f"data[{key!r}] must be (C, D, H, W) with channel {self.channel} in range, got shape "
                    f"{tuple(img.shape)!r}."
                )
            images[key] = img[self.channel][None]
        shape = tuple(images[keys[0]].shape[1:])
        for key in keys:
            if tuple(images[key].shape[1:]) != shape:
                raise ValueError(
                    f"data[{key!r}] must have the spatial shape of data[{keys[0]!r}] {shape!r} "
                    f"(one draw is shared by all keys), got {tuple(images[key].shape[1:])!r}."
                )
        self.randomize(shape)
        key_map = {k: (g, loc) for k, g, loc in zip(self.keys, self.global_keys, self.local_keys)}
        for key in keys:
            views = self.views(images[key])
            g_key, l_key = key_map[key]
            d[g_key] = views[: self.num_global]
            if self.num_local:
                d[l_key] = views[self.num_global :]
        return d


RandTexturePoolViewsD = RandTexturePoolViewsDict = RandTexturePoolViewsd
RandCropViews3DD = RandCropViews3DDict = RandCropViews3Dd
