"""``RandConstrainedMultiCrop``: multi-crop views that each keep a minimum share of non-zero (bone) pixels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import Randomizable, Transform
from monai.transforms.traits import MultiSampleTrait
from monai.utils import MAX_SEED, TransformBackends
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

from monai_osteo.transforms.multicrop.functional import WindowSample, sample_windows, summed_area_table

__all__ = ["RandConstrainedMultiCrop"]

_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    size = (int(value), int(value)) if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name} must be a positive int or a (height, width) pair, got {value!r}.")
    return size


def _range(value: Sequence[float], name: str, upper: float | None) -> tuple[float, float]:
    vals = tuple(float(v) for v in value) if isinstance(value, (Sequence, np.ndarray)) else ()
    lo, hi = vals if len(vals) == 2 else (np.nan, np.nan)
    if not (0 < lo <= hi and (upper is None or hi <= upper)):
        bound = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be a (min, max) pair with 0 < min <= max{bound}, got {value!r}.")
    return lo, hi


def check_image(img: NdarrayOrTensor, name: str = "img") -> None:
    """Raise a ``ValueError`` unless ``img`` is a non-empty channel-first 2-D image (C, H, W)."""
    shape = tuple(img.shape)
    if len(shape) != 3:
        raise ValueError(
            f"{name} must be channel-first 2-D (C, H, W), got shape {shape!r}; "
            "add a channel with EnsureChannelFirst, or take one slice of a volume."
        )
    if min(shape) == 0:
        raise ValueError(f"{name} must be non-empty, got shape {shape!r}.")


def crop_resize(
    img: torch.Tensor, window: Sequence[int], size: tuple[int, int], mode: str = "bilinear", antialias: bool = True
) -> torch.Tensor:
    """Crop ``img`` (C, H, W) to ``window`` = (top, left, height, width) and resize to ``size``.

    Uses ``torch.nn.functional.interpolate`` with antialiasing, the resampling of torchvision/lightly's
    ``RandomResizedCrop`` on tensors (MONAI ``Resize`` smooths with a Gaussian instead, which is slower
    and differs from the multi-crop reference). Integer images are rounded and clamped back to their dtype.
    """
    top, left, h, w = (int(v) for v in window)
    crop = img[None, :, top : top + h, left : left + w]
    work = crop if crop.dtype in (torch.float32, torch.float64) else crop.float()
    # bilinear antialiasing only changes a downsampled axis; upsampling takes torch's faster plain kernel
    # (identical to 1e-7, ~1.5x faster on 96-px local views, which are mostly upsampled)
    aa = antialias and mode in ("bilinear", "bicubic") and (mode == "bicubic" or h > size[0] or w > size[1])
    align = False if mode in ("bilinear", "bicubic") else None
    out = F.interpolate(work, size=size, mode=mode, align_corners=align, antialias=aa)[0]
    if not img.dtype.is_floating_point:
        info = torch.iinfo(img.dtype) if img.dtype != torch.bool else None
        out = out.round() if info is None else out.round().clamp(info.min, info.max)
    return out.to(img.dtype)


class RandConstrainedMultiCrop(Randomizable, Transform, MultiSampleTrait):
    """Multi-crop (SwAV [1]) where every view keeps at least ``min_foreground`` non-zero pixels [0].

    Bone patches are mostly zero outside the bone, so conventional random-resized crops often miss the
    bone (Fig. 3 of [0]); the paper rejects crops with < 10% non-zero pixels by iterative rejection
    sampling. Here a summed-area table of the non-zero indicator scores any window in O(1) and proposals
    are drawn and scored in vectorised batches: same conditional distribution and tries count as
    rejection sampling, without a Python loop per try (see
    :func:`~monai_osteo.transforms.multicrop.functional.sample_windows`). Where no window of the drawn
    sizes reaches the threshold (e.g. an all-zero patch) the best available window is used and flagged.

    Defaults: 2 global views 224² with area scale (0.14, 1.0) and 4 local views 96² with (0.05, 0.14), the
    paper's view counts with the SwAV scales of lightly's ``SwaVTransform``; aspect ratio (3/4, 4/3) as
    torchvision. ``min_foreground=0`` is the conventional multi-crop of the paper's ablation (Table 7).

    After each call, ``self.sample`` holds the (V, ...) windows, fractions, ``constraint_met`` flags and
    tries of the views [global..., local...]; MetaTensor views carry them in ``meta`` (``multicrop_*``)
    with the affine updated for the crop and resize.

    Args:
        global_size: output (H, W) of global views (int for square).
        local_size: output (H, W) of local views.
        num_global: number of global views.
        num_local: number of local views (0 for none).
        global_scale: (min, max) share of the source area of a global window.
        local_scale: (min, max) share of the source area of a local window.
        ratio: (min, max) aspect ratio width / height of windows.
        min_foreground: minimum non-zero share of each source window, in [0, 1); 0 disables the constraint.
        mode: interpolation mode of ``torch.nn.functional.interpolate``.
        antialias: antialias when downsampling (bilinear/bicubic only).
        view_transform: optional callable applied to each view separately (e.g.
            :func:`~monai_osteo.transforms.presets.hand_view_augmentation`), a fresh random draw per view.
        local_view_transform: callable for local views; defaults to ``view_transform``.
        num_candidates: proposals in the first vectorised batch per group of views.
        max_candidates: proposals per group before the exhaustive fallback search.

    Raises:
        ValueError: bad arguments, an image that is not (C, H, W), or an empty image.

    - [0] hand_xray_osteoporosis_journal, §"Multi-crop data augmentation", Fig. 3, Table 7.
    - [1] Caron et al., 2020, Unsupervised learning of visual features by contrasting cluster assignments.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        global_size: int | Sequence[int] = 224,
        local_size: int | Sequence[int] = 96,
        num_global: int = 2,
        num_local: int = 4,
        global_scale: Sequence[float] = (0.14, 1.0),
        local_scale: Sequence[float] = (0.05, 0.14),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        min_foreground: float = 0.1,
        mode: str = "bilinear",
        antialias: bool = True,
        view_transform: Callable | None = None,
        local_view_transform: Callable | None = None,
        num_candidates: int = 64,
        max_candidates: int = 4096,
    ) -> None:
        self.global_size = _pair(global_size, "global_size")
        self.local_size = _pair(local_size, "local_size")
        if int(num_global) < 1 or int(num_local) < 0:
            raise ValueError(f"num_global must be >= 1 and num_local >= 0, got {num_global!r}, {num_local!r}.")
        self.num_global, self.num_local = int(num_global), int(num_local)
        self.global_scale = _range(global_scale, "global_scale", 1.0)
        self.local_scale = _range(local_scale, "local_scale", 1.0)
        self.ratio = _range(ratio, "ratio", None)
        if not 0.0 <= float(min_foreground) < 1.0:
            raise ValueError(f"min_foreground must be in [0, 1), e.g. 0.1 for 10%, got {min_foreground!r}.")
        self.min_foreground = float(min_foreground)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES!r}, got {mode!r}.")
        self.mode, self.antialias = mode, bool(antialias)
        if int(num_candidates) < 1 or int(max_candidates) < int(num_candidates):
            raise ValueError(
                f"num_candidates must be >= 1 and max_candidates >= num_candidates, "
                f"got {num_candidates!r}, {max_candidates!r}."
            )
        self.num_candidates, self.max_candidates = int(num_candidates), int(max_candidates)
        self.view_transform = view_transform
        self.local_view_transform = view_transform if local_view_transform is None else local_view_transform
        self.sample: WindowSample | None = None

    @property
    def num_views(self) -> int:
        return self.num_global + self.num_local

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandConstrainedMultiCrop:
        """Seed ``self.R`` and, from it, every randomizable view transform; returns self."""
        super().set_random_state(seed=seed, state=state)
        inner_seed = int(self.R.randint(MAX_SEED, dtype="uint32"))  # always drawn: windows don't depend on it
        for k, t in enumerate(self._view_transforms()):
            if isinstance(t, Randomizable):
                t.set_random_state(seed=(inner_seed + k) % MAX_SEED)
        return self

    def _view_transforms(self) -> list[Callable]:
        ts = [self.view_transform, self.local_view_transform]
        return [t for i, t in enumerate(ts) if t is not None and all(t is not u for u in ts[:i])]

    def randomize(self, data: NdarrayOrTensor) -> None:
        """Choose all windows for one image from its (H, W) non-zero indicator ``data``."""
        fg = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        sat = summed_area_table(fg)
        groups = [(self.num_global, self.global_scale), (self.num_local, self.local_scale)]
        parts = [
            sample_windows(
                sat, n, scale, self.ratio, self.min_foreground, self.R, self.num_candidates, self.max_candidates
            )
            for n, scale in groups
            if n > 0
        ]
        self.sample = WindowSample(*(np.concatenate(f) for f in zip(*parts)))

    def foreground(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> np.ndarray:
        """(H, W) bool numpy indicator: pixels non-zero in any channel of ``img``, or of ``mask`` when given."""
        src = img if mask is None else mask
        check_image(src, "img" if mask is None else "mask")
        if mask is not None and tuple(mask.shape[1:]) != tuple(img.shape[1:]):
            raise ValueError(f"mask must have the spatial shape of img {tuple(img.shape[1:])!r}, got {mask.shape!r}.")
        if isinstance(src, np.ndarray):
            return (src != 0).any(0)
        t = src.as_tensor() if isinstance(src, MetaTensor) else convert_to_tensor(src, track_meta=False)
        if t.device.type == "cpu" and t.dtype != torch.bfloat16:
            return (t.detach().numpy() != 0).any(0)  # numpy is ~5x faster than torch on small CPU images
        return (t != 0).any(0).cpu().numpy()

    def view_sizes(self) -> list[tuple[int, int]]:
        return [self.global_size] * self.num_global + [self.local_size] * self.num_local

    def crop_views(
        self, img: NdarrayOrTensor, mode: str | None = None, antialias: bool | None = None
    ) -> list[NdarrayOrTensor]:
        """Crop and resize ``img`` (C, H, W) to every window of ``self.sample``; no view transform."""
        if self.sample is None:
            raise ValueError("crop_views needs windows: call the transform (or randomize) first, got none.")
        check_image(img)
        ends = (self.sample.windows[:, :2] + self.sample.windows[:, 2:]).max(0)
        if ends[0] > img.shape[1] or ends[1] > img.shape[2]:
            raise ValueError(
                f"img must contain the windows drawn for it (up to {tuple(int(e) for e in ends)!r}), got spatial "
                f"shape {tuple(img.shape[1:])!r}; call with randomize=True for a new image size."
            )
        mode = self.mode if mode is None else mode
        antialias = self.antialias if antialias is None else antialias
        t = img.as_tensor() if isinstance(img, MetaTensor) else convert_to_tensor(img, track_meta=False)
        s = self.sample
        views = []
        for v, size in enumerate(self.view_sizes()):
            out = crop_resize(t, s.windows[v], size, mode, antialias)
            if isinstance(img, MetaTensor):
                out = self._meta_view(img, out, v, size) if get_track_meta() else out
            elif type(img) is not torch.Tensor:  # plain tensors already have img's dtype and device
                out = convert_to_dst_type(out, img)[0]
            views.append(out)
        return views

    def _meta_view(self, img: MetaTensor, out: torch.Tensor, v: int, size: tuple[int, int]) -> MetaTensor:
        s = self.sample
        top, left, h, w = (int(x) for x in s.windows[v])
        affine = img.affine.clone().to(torch.float64)
        step = torch.eye(affine.shape[-1], dtype=torch.float64)
        for axis, (start, src, dst) in enumerate(((top, h, size[0]), (left, w, size[1]))):
            if axis < affine.shape[-1] - 1:
                step[axis, axis] = src / dst
                step[axis, -1] = start + 0.5 * src / dst - 0.5  # pixel centres, align_corners=False
        meta = dict(img.meta)
        meta["affine"] = (affine @ step).to(img.affine.dtype)
        meta.update(
            multicrop_view="global" if v < self.num_global else "local",
            multicrop_index=v,
            multicrop_window=np.array([top, left, h, w], np.int64),
            multicrop_foreground_fraction=float(s.fractions[v]),
            multicrop_constraint_met=bool(s.constraint_met[v]),
            multicrop_tries=int(s.tries[v]),
        )
        return MetaTensor(out, meta=meta, applied_operations=list(img.applied_operations))

    def __call__(
        self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None, randomize: bool = True
    ) -> list[NdarrayOrTensor]:
        """
        Args:
            img: (C, H, W) image, zero outside the bone; numpy or torch (MetaTensor keeps metadata).
            mask: optional (C', H, W) foreground; non-zero pixels count as foreground instead of ``img``'s.
            randomize: draw new windows (False reuses ``self.sample``, e.g. for a paired image).

        Returns:
            list of ``num_global`` views (C, *global_size) then ``num_local`` views (C, *local_size), in
            the type, dtype and device of ``img``; each passed through its view transform if any.
        """
        check_image(img)
        if randomize:
            self.randomize(self.foreground(img, mask))
        views = self.crop_views(img)
        for v in range(self.num_views):
            fn = self.view_transform if v < self.num_global else self.local_view_transform
            if fn is not None:
                views[v] = fn(views[v])
        return views
