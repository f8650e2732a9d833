"""Dictionary twins of :class:`~monai_osteo.transforms.texture.array.GLCMTextureMap` and
:class:`~monai_osteo.transforms.texture.array.TexturePool`.

- [0] TP-SwAV: ``papers/vertebral_ct_tpswav_moe.txt`` §2.1 and Fig. 1C.
- [1] van Griethuysen et al., 2017, Computational radiomics system to decode the radiographic phenotype.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple

from monai_osteo.transforms.texture.array import GLCMTextureMap, TexturePool
from monai_osteo.transforms.texture.functional import TP_SWAV_FEATURES

__all__ = [
    "GLCMTextureMapD",
    "GLCMTextureMapDict",
    "GLCMTextureMapd",
    "TexturePoolD",
    "TexturePoolDict",
    "TexturePoold",
]


def _output_keys(keys: tuple, output_keys: KeysCollection | None, postfix: str) -> tuple:
    """One output key per input key: ``output_keys`` if given, else ``key + postfix``."""
    if output_keys is None:
        return tuple(f"{key}{postfix}" if postfix else key for key in keys)
    out = ensure_tuple(output_keys)
    if len(out) != len(keys):
        raise ValueError(f"output_keys must give one key per image key ({len(keys)}), got {output_keys!r}.")
    return out


class GLCMTextureMapd(MapTransform):
    """Dictionary-based :class:`~monai_osteo.transforms.texture.array.GLCMTextureMap`.

    The (F, H, W[, D]) maps of ``data[key]`` go to ``data[output_key]``: ``output_keys`` names them, one per key
    (the image key itself replaces the image); by default ``key + output_postfix``. ``mask_key`` names an
    optional ROI in the same dictionary, shared by all keys.

    Args:
        keys: keys of the (1, H, W[, D]) images.
        mask_key: key of the ROI mask (non-zero = ROI); None = whole images.
        output_keys: where to write each result; default ``key + output_postfix``.
        output_postfix: suffix of the default output keys.
        allow_missing_keys: skip missing keys instead of raising.
        features, kernel_radius, bin_width, bin_count, masked_kernel, dtype, fill_value, chunk_size: see
            :class:`~monai_osteo.transforms.texture.array.GLCMTextureMap`.
    """

    backend = GLCMTextureMap.backend

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: Hashable | None = None,
        output_keys: KeysCollection | None = None,
        output_postfix: str = "_glcm",
        features: Sequence[str] = TP_SWAV_FEATURES,
        kernel_radius: int = 1,
        bin_width: float = 25.0,
        bin_count: int | None = None,
        masked_kernel: bool = True,
        dtype: DtypeLike | torch.dtype = "float32",
        fill_value: float = float("nan"),
        chunk_size: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.output_keys = _output_keys(self.keys, output_keys, output_postfix)
        self.transform = GLCMTextureMap(
            features, kernel_radius, bin_width, bin_count, masked_kernel, dtype, fill_value, chunk_size
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Add ``data[output_key]``, the (F, H, W[, D]) maps of ``data[key]``."""
        d = dict(data)
        mask = None if self.mask_key is None else d[self.mask_key]
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self.transform(d[key], mask)
        return d


class TexturePoold(MapTransform):
    """Dictionary-based :class:`~monai_osteo.transforms.texture.array.TexturePool`.

    The (1 + F, H, W[, D]) pool of ``data[key]`` replaces it by default (``output_postfix=""``), so the next
    transforms (crops into SwAV views) see the pool as the image; set ``output_keys`` or ``output_postfix`` to
    keep the image. ``mask_key`` names an optional ROI in the same dictionary, shared by all keys.

    Args:
        keys: keys of the (1, H, W[, D]) images.
        mask_key: key of the ROI mask (non-zero = ROI); None = whole images.
        output_keys: where to write each pool; default ``key + output_postfix``.
        output_postfix: suffix of the default output keys ("" = in place).
        allow_missing_keys: skip missing keys instead of raising.
        features, kernel_radius, bin_width, bin_count, masked_kernel, normalize, nan_fill, include_image,
            dtype, chunk_size: see :class:`~monai_osteo.transforms.texture.array.TexturePool`.
    """

    backend = TexturePool.backend

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: Hashable | None = None,
        output_keys: KeysCollection | None = None,
        output_postfix: str = "",
        features: Sequence[str] = TP_SWAV_FEATURES,
        kernel_radius: int = 1,
        bin_width: float = 25.0,
        bin_count: int | None = None,
        masked_kernel: bool = True,
        normalize: str = "zscore",
        nan_fill: float = 0.0,
        include_image: bool = True,
        dtype: DtypeLike | torch.dtype = "float32",
        chunk_size: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.output_keys = _output_keys(self.keys, output_keys, output_postfix)
        self.transform = TexturePool(
            features, kernel_radius, bin_width, bin_count, masked_kernel, normalize, nan_fill, include_image,
            dtype, chunk_size,
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Write ``data[output_key]``, the (1 + F, H, W[, D]) texture pool of ``data[key]``."""
        d = dict(data)
        mask = None if self.mask_key is None else d[self.mask_key]
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self.transform(d[key], mask)
        return d


GLCMTextureMapD = GLCMTextureMapDict = GLCMTextureMapd
TexturePoolD = TexturePoolDict = TexturePoold
