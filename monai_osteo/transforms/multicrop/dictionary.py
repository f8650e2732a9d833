"""``RandConstrainedMultiCropd``: dictionary twin of :class:`RandConstrainedMultiCrop`."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import MAX_SEED, ensure_tuple_rep

from monai_osteo.transforms.multicrop.array import RandConstrainedMultiCrop, check_image

__all__ = ["RandConstrainedMultiCropd", "RandConstrainedMultiCropD", "RandConstrainedMultiCropDict"]


class RandConstrainedMultiCropd(Randomizable, MapTransform):
    """Dictionary-based wrapper of :class:`~monai_osteo.transforms.multicrop.array.RandConstrainedMultiCrop`.

    One draw of windows is shared by all ``keys`` (e.g. an image and its bone mask). Each ``key`` is
    replaced by two lists, ``key + global_postfix`` (``num_global`` views (C, *global_size)) and
    ``key + local_postfix`` (``num_local`` views (C, *local_size)). With MONAI's ``list_data_collate`` or
    torch's ``default_collate`` a batch then holds lists of (B, C, *global_size) and (B, C, *local_size)
    tensors, the layout multi-view SSL losses take. The source entry is dropped by default because bone
    patches differ in size and would not collate.

    Args:
        keys: keys of the (C, H, W) images to crop. See also: :py:class:`monai.transforms.compose.MapTransform`.
        mask_key: key whose non-zero pixels define the foreground; defaults to the first of ``keys``.
        global_size, local_size, num_global, num_local, global_scale, local_scale, ratio, min_foreground,
            num_candidates, max_candidates: as in
            :class:`~monai_osteo.transforms.multicrop.array.RandConstrainedMultiCrop`.
        mode: interpolation mode, one per key or one for all (``"nearest"`` for label maps).
        antialias: antialias flag, one per key or one for all.
        view_transform: optional dictionary transform applied to each view separately, to the mapping
            ``{key: view}`` (so paired keys share that view's draw), e.g.
            :func:`~monai_osteo.transforms.presets.hand_view_augmentationd`.
        local_view_transform: dictionary transform for local views; defaults to ``view_transform``.
        global_postfix: suffix of the output key of global views.
        local_postfix: suffix of the output key of local views.
        keep_source: keep the uncropped entries under ``keys``.
        info_key: if set, store a dict of (V, ...) arrays ``window``, ``foreground_fraction``,
            ``constraint_met``, ``tries`` under this key.
        allow_missing_keys: don't raise if a key is missing.

    - [0] hand_xray_osteoporosis_journal, §"Multi-crop data augmentation", Fig. 3, Table 7.
    """

    backend = RandConstrainedMultiCrop.backend

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str | None = None,
        global_size: int | Sequence[int] = 224,
        local_size: int | Sequence[int] = 96,
        num_global: int = 2,
        num_local: int = 4,
        global_scale: Sequence[float] = (0.14, 1.0),
        local_scale: Sequence[float] = (0.05, 0.14),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        min_foreground: float = 0.1,
        mode: str | Sequence[str] = "bilinear",
        antialias: bool | Sequence[bool] = True,
        view_transform: Callable | None = None,
        local_view_transform: Callable | None = None,
        global_postfix: str = "_global",
        local_postfix: str = "_local",
        keep_source: bool = False,
        info_key: str | None = None,
        num_candidates: int = 64,
        max_candidates: int = 4096,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.antialias = ensure_tuple_rep(antialias, len(self.keys))
        self.cropper = RandConstrainedMultiCrop(
            global_size=global_size,
            local_size=local_size,
            num_global=num_global,
            num_local=num_local,
            global_scale=global_scale,
            local_scale=local_scale,
            ratio=ratio,
            min_foreground=min_foreground,
            mode=self.mode[0],
            num_candidates=num_candidates,
            max_candidates=max_candidates,
        )
        if not global_postfix or not local_postfix or global_postfix == local_postfix:
            raise ValueError(
                f"global_postfix and local_postfix must be distinct non-empty strings, "
                f"got {global_postfix!r} and {local_postfix!r}."
            )
        self.mask_key = mask_key
        self.view_transform = view_transform
        self.local_view_transform = view_transform if local_view_transform is None else local_view_transform
        self.global_postfix, self.local_postfix = global_postfix, local_postfix
        self.keep_source = keep_source
        self.info_key = info_key

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandConstrainedMultiCropd:
        """Seed ``self.R``, the inner cropper (same windows as the array version under the same seed) and
        every randomizable view transform; returns self."""
        super().set_random_state(seed=seed, state=state)
        self.cropper.set_random_state(seed=seed, state=state)
        inner_seed = int(self.R.randint(MAX_SEED, dtype="uint32"))
        ts = [self.view_transform, self.local_view_transform]
        ts = [t for i, t in enumerate(ts) if t is not None and all(t is not u for u in ts[:i])]
        for k, t in enumerate(ts):
            if isinstance(t, Randomizable):
                t.set_random_state(seed=(inner_seed + k) % MAX_SEED)
        return self

    def randomize(self, data: np.ndarray) -> None:
        """Choose the windows from the (H, W) non-zero indicator ``data``."""
        self.cropper.randomize(data)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        """
        Args:
            data: mapping whose ``keys`` entries are (C, H, W) images of one spatial shape.

        Returns:
            a shallow copy of ``data`` with the view lists added (and the sources removed unless
            ``keep_source``).
        """
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        for key in keys:
            check_image(d[key], f"data[{key!r}]")
            if tuple(d[key].shape[1:]) != tuple(d[keys[0]].shape[1:]):
                raise ValueError(
                    f"data[{key!r}] must have the spatial shape of data[{keys[0]!r}] "
                    f"{tuple(d[keys[0]].shape[1:])!r}, got {tuple(d[key].shape[1:])!r}."
                )
        if self.mask_key is not None and self.mask_key not in d:
            raise ValueError(f"mask_key must name an entry of the data, got {self.mask_key!r}; keys: {list(d)!r}.")
        mask = None if self.mask_key is None else d[self.mask_key]
        self.randomize(self.cropper.foreground(d[keys[0]], mask))
        mode_aa = {k: (m, a) for k, m, a in zip(self.keys, self.mode, self.antialias)}
        views = {k: self.cropper.crop_views(d[k], *mode_aa[k]) for k in keys}
        ng = self.cropper.num_global
        for v in range(self.cropper.num_views):
            fn = self.view_transform if v < ng else self.local_view_transform
            if fn is not None:
                out = fn({k: views[k][v] for k in keys})
                for k in keys:
                    views[k][v] = out[k]
        for k in keys:
            d[f"{k}{self.global_postfix}"] = views[k][:ng]
            d[f"{k}{self.local_postfix}"] = views[k][ng:]
            if not self.keep_source:
                del d[k]
        if self.info_key is not None:
            s = self.cropper.sample
            d[self.info_key] = {
                "window": s.windows.copy(),
                "foreground_fraction": s.fractions.copy(),
                "constraint_met": s.constraint_met.copy(),
                "tries": s.tries.copy(),
            }
        return d


RandConstrainedMultiCropD = RandConstrainedMultiCropDict = RandConstrainedMultiCropd
