"""Dictionary twin of :class:`~monai_osteo.transforms.letterbox.array.Letterbox`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import ensure_tuple_rep

from monai_osteo.transforms.letterbox.array import CropLetterbox, Letterbox

__all__ = ["CropLetterboxd", "LetterboxD", "LetterboxDict", "Letterboxd"]


class Letterboxd(MapTransform, InvertibleTransform):
    """Letterbox each key to ``spatial_size`` (image and label maps together: same padding, own interpolation).

    Args:
        keys: keys to transform.
        spatial_size: (h, w) output size.
        mode: interpolation per key (e.g. ``["area", "nearest-exact"]`` for image and label).
        anti_aliasing: per key, as ``monai.transforms.Resize``.
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = Letterbox.backend

    def __init__(self, keys: KeysCollection, spatial_size: Sequence[int], mode: str | Sequence[str] = "area",
                 anti_aliasing: bool | Sequence[bool] = False, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        modes = ensure_tuple_rep(mode, len(self.keys))
        aa = ensure_tuple_rep(anti_aliasing, len(self.keys))
        self.letterbox = {k: Letterbox(spatial_size, m, a) for k, m, a in zip(self.keys, modes, aa)}

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.letterbox[key](d[key])
        return d

    def inverse(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.letterbox[key].inverse(d[key])
        return d


LetterboxD = LetterboxDict = Letterboxd


class CropLetterboxd(MapTransform):
    """Crop each key (a prediction at the network's size) to the image window of the letterboxed ``ref_key``.

    Args:
        keys: predictions, (C, h, w) on the letterboxed grid.
        ref_key: the letterboxed image (a MetaTensor with the :class:`Letterboxd` trace).
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = CropLetterbox.backend

    def __init__(self, keys: KeysCollection, ref_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.crop = CropLetterbox()

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.crop(d[key], d[self.ref_key])
        return d
