"""Dictionary twin of :class:`~monai_osteo.transforms.otsu.array.OtsuPseudoMask`.

- [0] Otsu, 1979, A threshold selection method from gray-level histograms.
- [3] Singh and Cirrone, MedSASS, ``papers/medsass_otsu_self_supervision.txt`` §3.3.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple

from monai_osteo.transforms.otsu.array import OtsuPseudoMask

__all__ = ["OtsuPseudoMaskd", "OtsuPseudoMaskD", "OtsuPseudoMaskDict"]


class OtsuPseudoMaskd(MapTransform):
    """Dictionary-based :class:`~monai_osteo.transforms.otsu.array.OtsuPseudoMask`: writes a mask next to each image.

    The mask of ``data[key]`` goes to ``data[mask_key]``: ``mask_keys`` names them one per key (use the image
    key itself to replace the image, or e.g. ``"label"`` to feed a segmentation loss as MedSASS does);
    by default ``f"{key}{mask_postfix}"``. An existing entry of that name is overwritten.

    Args:
        keys: keys of the images to threshold.
        mask_keys: where to write each mask, one per key; default ``key + mask_postfix``.
        mask_postfix: suffix of the default mask keys.
        allow_missing_keys: skip missing keys instead of raising.
        method, batched, nbins, block_size, offset, sigma, nu, tau, kappa, omega, dtype, foreground: see
            :class:`~monai_osteo.transforms.otsu.array.OtsuPseudoMask`.
    """

    backend = OtsuPseudoMask.backend

    def __init__(
        self,
        keys: KeysCollection,
        mask_keys: KeysCollection | None = None,
        mask_postfix: str = "_mask",
        method: str = "otsu",
        batched: bool = False,
        nbins: int = 256,
        block_size: int = 11,
        offset: float = 0.0,
        sigma: float | None = None,
        nu: float = 0.0,
        tau: float = 0.0,
        kappa: float = 0.0,
        omega: float = 0.5,
        dtype: DtypeLike | torch.dtype = "float32",
        allow_missing_keys: bool = False,
        foreground: str = "bright",
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if mask_keys is None:
            self.mask_keys = tuple(f"{key}{mask_postfix}" for key in self.keys)
        else:
            self.mask_keys = ensure_tuple(mask_keys)
            if len(self.mask_keys) != len(self.keys):
                raise ValueError(
                    f"mask_keys must give one key per image key ({len(self.keys)}), got {mask_keys!r}."
                )
        self.transform = OtsuPseudoMask(
            method=method, batched=batched, nbins=nbins, block_size=block_size, offset=offset, sigma=sigma,
            nu=nu, tau=tau, kappa=kappa, omega=omega, dtype=dtype, foreground=foreground,
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Add ``data[mask_key]``, the (1, H, W[, D]) or batched (B, 1, H, W[, D]) mask of ``data[key]``."""
        d = dict(data)
        for key, mask_key in self.key_iterator(d, self.mask_keys):
            d[mask_key] = self.transform(d[key])
        return d


OtsuPseudoMaskD = OtsuPseudoMaskDict = OtsuPseudoMaskd
