"""``LoadRadiographd``: dictionary twin of :class:`~monai_osteo.data.readers.array.LoadRadiograph`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_osteo.data.readers.array import LoadRadiograph

__all__ = ["LoadRadiographd", "LoadRadiographD", "LoadRadiographDict"]


class LoadRadiographd(MapTransform):
    """Dictionary-based wrapper of :class:`~monai_osteo.data.readers.array.LoadRadiograph`.

    Replaces each file path under ``keys`` by the loaded float32 MetaTensor (1, H, W) or (1, H, W, D); the
    metadata stays in ``MetaTensor.meta`` (no separate ``*_meta_dict`` entry).

    Args:
        keys: keys of the file paths to load. See also: :py:class:`monai.transforms.compose.MapTransform`.
        spatial_dims: 2 for radiographs, 3 for volumes.
        normalize: min-max normalise to [0, 1] after windowing/inversion; False keeps the modality values.
        use_voi: apply the DICOM VOI window when present (only with ``normalize=True``).
        keep_dicom_header: keep every DICOM tag in the metadata.
        allow_missing_keys: don't raise if a key is missing.

    Raises:
        RadiographReadError: see :class:`~monai_osteo.data.readers.array.LoadRadiograph`.
    """

    backend = LoadRadiograph.backend

    def __init__(
        self,
        keys: KeysCollection,
        spatial_dims: int = 2,
        normalize: bool = True,
        use_voi: bool = True,
        keep_dicom_header: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadRadiograph(
            spatial_dims=spatial_dims, normalize=normalize, use_voi=use_voi, keep_dicom_header=keep_dicom_header
        )

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        """
        Args:
            data: mapping whose ``keys`` entries are file paths.

        Returns:
            a shallow copy of ``data`` with those entries replaced by MetaTensors.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


LoadRadiographD = LoadRadiographDict = LoadRadiographd
