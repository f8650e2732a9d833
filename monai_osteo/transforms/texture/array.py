"""GLCM texture maps and the TP-SwAV texture pool: pyradiomics' voxel-based GLCM features, exact, in torch.

The TP-SwAV paper [0] builds, for every vertebra image, a texture pool: the image plus sliding-window GLCM
feature maps (autocorrelation, joint average, contrast, difference average) extracted with pyradiomics [1],
each map the size of the image. pyradiomics' voxel-based mode builds one co-occurrence matrix per voxel and
runs at about a thousand voxels per second; :class:`GLCMTextureMap` gives the same maps (float64: equal to
round-off; float32: <= 4e-7 relative) orders of magnitude faster, from window sums of pair quantities (see
:mod:`~monai_osteo.transforms.texture.functional`), on the CPU or the GPU. The paper's "adaptive
interpolation" is not needed: the maps are computed at every voxel, so they already have the image's size.

- [0] TP-SwAV: ``papers/vertebral_ct_tpswav_moe.txt`` §2.1 and Fig. 1C.
- [1] van Griethuysen et al., 2017, Computational radiomics system to decode the radiographic phenotype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.config import DtypeLike, NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, get_equivalent_dtype

from monai_osteo.transforms.texture.functional import GLCM_FEATURES, TP_SWAV_FEATURES, glcm_texture_maps

__all__ = ["GLCMTextureMap", "NORMALIZE_MODES", "TexturePool"]

#: per-channel normalisations of :class:`TexturePool`
NORMALIZE_MODES = ("zscore", "minmax", "none")


class GLCMTextureMap(Transform):
    """Voxel-based GLCM feature maps, identical to pyradiomics' ``RadiomicsFeatureExtractor(voxelBased=True)``.

    For every ROI voxel, the GLCM of its kernel (the box of radius ``kernel_radius`` clipped at the image border)
    at distance 1 in every direction (4 in 2-D, 13 in 3-D), symmetrised, gives each feature per direction; the
    map holds their mean over the directions that have pairs (JointAverage: NaN unless all have). Gray levels
    are discretised as pyradiomics does (``bin_width`` from the ROI minimum, or ``bin_count`` bins). The
    pyradiomics settings reproduced are ``binWidth``/``binCount``, ``kernelRadius``, ``maskedKernel``,
    ``distances=[1]``, ``symmetricalGLCM=True``, ``weightingNorm=None``, ``force2D=False``, ``voxelBatch=-1``;
    a 2-D image here is a 2-D image there (or a (1, H, W) volume: same maps), and the ``label`` is every
    non-zero mask value.

    Features (:data:`~monai_osteo.transforms.texture.functional.GLCM_FEATURES`, pyradiomics names): the four
    of TP-SwAV by default, plus SumAverage, Id, Idm, Idmn, Idn, InverseVariance. Features not linear in the
    GLCM (entropies, energy, correlation, IMC, MCC, cluster moments, ...) are not provided.

    Args:
        features: feature names, in output channel order.
        kernel_radius: kernel radius r >= 1 (pyradiomics ``kernelRadius``, default 1).
        bin_width: fixed bin width in image units (pyradiomics default 25), used unless ``bin_count`` is set.
        bin_count: fixed number of bins over the reference range, instead of ``bin_width``.
        masked_kernel: pyradiomics ``maskedKernel``: only ROI voxels enter the kernel and the binning; False
            uses every voxel (binning over the ROI's bounding box padded by r). No effect without a mask.
        dtype: ``"float32"`` (default, <= 4e-7 relative to pyradiomics, faster) or ``"float64"`` (equal to
            pyradiomics to round-off, ~1e-15).
        fill_value: value where pyradiomics gives none: outside the mask, or no pair in the kernel (NaN default;
            pyradiomics' ``initValue`` outside the mask).
        chunk_size: edge length (voxels) of the tiles processed one at a time, each with an r-voxel halo,
            bounding memory; None = automatic (16 MiB working tensors). The result does not depend on it.

    Example::

        maps = GLCMTextureMap(kernel_radius=2)(ct, mask=vertebra)  # (4, H, W, D) float32, NaN off the mask
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        features: Sequence[str] = TP_SWAV_FEATURES,
        kernel_radius: int = 1,
        bin_width: float = 25.0,
        bin_count: int | None = None,
        masked_kernel: bool = True,
        dtype: DtypeLike | torch.dtype = "float32",
        fill_value: float = float("nan"),
        chunk_size: int | None = None,
    ) -> None:
        features = (features,) if isinstance(features, str) else tuple(features)
        unknown = [f for f in features if f not in GLCM_FEATURES]
        if not features or unknown or len(set(features)) != len(features):
            raise ValueError(
                f"features must be distinct names among {GLCM_FEATURES} (pyradiomics names), got {features!r}."
            )
        if isinstance(kernel_radius, bool) or not isinstance(kernel_radius, int) or kernel_radius < 1:
            raise ValueError(f"kernel_radius must be an int >= 1 (pyradiomics kernelRadius), got {kernel_radius!r}.")
        if bin_count is None and not (isinstance(bin_width, (int, float)) and bin_width > 0):
            raise ValueError(f"bin_width must be a positive number (image units), got {bin_width!r}.")
        if bin_count is not None and (isinstance(bin_count, bool) or not isinstance(bin_count, int) or bin_count < 1):
            raise ValueError(f"bin_count must be None (use bin_width) or an integer >= 1, got {bin_count!r}.")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be None (automatic) or an integer >= 1, got {chunk_size!r}.")
        torch_dtype = get_equivalent_dtype(dtype, torch.Tensor)
        if torch_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
        self.features = features
        self.kernel_radius = kernel_radius
        self.bin_width = bin_width
        self.bin_count = bin_count
        self.masked_kernel = bool(masked_kernel)
        self.dtype = torch_dtype
        self.fill_value = float(fill_value)
        self.chunk_size = chunk_size

    @staticmethod
    def _spatial(img: torch.Tensor, mask: NdarrayOrTensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validate a (1, H, W[, D]) image and its optional mask; return both without the channel dim."""
        if img.ndim not in (3, 4) or img.shape[0] != 1:
            raise ValueError(
                f"img must be channel-first with one channel, (1, H, W) or (1, H, W, D), got shape {tuple(img.shape)}: "
                "add a channel dim (e.g. monai.transforms.EnsureChannelFirst) or select one channel."
            )
        if img.is_complex() or img.dtype == torch.bool:
            raise ValueError(f"img must be real-valued (integer or float), got dtype {img.dtype}.")
        if mask is None:
            return img[0], None
        m = convert_to_tensor(mask, track_meta=False, device=img.device)
        if m.ndim == img.ndim:
            m = m[0] if m.shape[0] == 1 else m
        if tuple(m.shape) != tuple(img.shape[1:]):
            raise ValueError(
                f"mask must have the image's spatial shape {tuple(img.shape[1:])} (optionally with a leading 1), "
                f"got {tuple(m.shape)}."
            )
        return img[0], m

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        """Compute the feature maps of one image.

        Args:
            img: (1, H, W) or (1, H, W, D) image (numpy, torch or MetaTensor; integer or float).
            mask: ROI, (H, W[, D]) or (1, H, W[, D]), non-zero = ROI; None = the whole image.

        Returns:
            (F, H, W[, D]) maps of ``dtype`` in ``img``'s type and device (a MetaTensor keeps its metadata),
            ``fill_value`` where pyradiomics gives no value.
        """
        image, roi = self._spatial(convert_to_tensor(img, track_meta=False), mask)
        maps = glcm_texture_maps(
            image, roi, self.features, self.kernel_radius, self.bin_width, self.bin_count, self.masked_kernel,
            self.dtype, self.fill_value, self.chunk_size,
        )
        return convert_to_dst_type(maps, dst=img, dtype=self.dtype)[0]


class TexturePool(Transform):
    """TP-SwAV texture pool [0]: the image and its GLCM feature maps as channels, each normalised on its own.

    Output channels: the image (if ``include_image``) then one per feature, in ``features`` order. Each channel
    is normalised per image over its finite values (the image channel: over the mask when one is given):

    - ``"zscore"`` (default): ``(x - mean) / std`` (population std; a constant channel becomes 0);
    - ``"minmax"``: ``(x - min) / (max - min)`` into [0, 1] (a constant channel becomes 0);
    - ``"none"``: raw values.

    Then the voxels without a value (NaN texture off the mask or in pair-less kernels) get ``nan_fill``
    (default 0: the channel mean after z-scoring), so the pool can be cropped into SwAV views and fed to a
    network. Pass ``dtype="float64"`` for maps equal to pyradiomics to round-off before normalisation.

    Args:
        features, kernel_radius, bin_width, bin_count, masked_kernel, dtype, chunk_size: see
            :class:`GLCMTextureMap` (the defaults are the TP-SwAV features, radius 1, bin width 25).
        normalize: one of :data:`NORMALIZE_MODES`.
        nan_fill: value of the voxels without a texture value, after normalisation.
        include_image: put the (normalised) image as channel 0.

    Example::

        pool = TexturePool(kernel_radius=2)(vertebra_ct)  # (5, H, W, D): image + 4 texture maps, z-scored
    """

    backend = GLCMTextureMap.backend

    def __init__(
        self,
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
    ) -> None:
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}.")
        if not math.isfinite(nan_fill):
            raise ValueError(f"nan_fill must be a finite number (the pool feeds a network), got {nan_fill!r}.")
        self.texture = GLCMTextureMap(
            features, kernel_radius, bin_width, bin_count, masked_kernel, dtype, float("nan"), chunk_size
        )
        self.normalize = normalize
        self.nan_fill = float(nan_fill)
        self.include_image = bool(include_image)

    def _normalise(self, x: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
        """Normalise one channel over its finite values (within ``region`` if given)."""
        finite = torch.isfinite(x) if region is None else torch.isfinite(x) & region
        if self.normalize != "none" and bool(finite.any()):
            values = x[finite]
            if self.normalize == "zscore":
                shift, scale = values.mean(), values.std(correction=0)
            else:
                shift, scale = values.min(), values.max() - values.min()
            x = (x - shift) / scale if float(scale) > 0 else torch.where(torch.isfinite(x), 0.0, x)
        return torch.nan_to_num(x, nan=self.nan_fill)

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        """Build the texture pool of one image.

        Args:
            img: (1, H, W) or (1, H, W, D) image (numpy, torch or MetaTensor).
            mask: optional ROI, (H, W[, D]) or (1, H, W[, D]), non-zero = ROI.

        Returns:
            (include_image + F, H, W[, D]) pool of ``dtype`` in ``img``'s type and device, finite everywhere.
        """
        image_t = convert_to_tensor(img, track_meta=False)
        image, roi = self.texture._spatial(image_t, mask)
        maps = convert_to_tensor(self.texture(image_t, roi), track_meta=False)
        region = None if roi is None else roi != 0
        channels = [self._normalise(m, None) for m in maps]
        if self.include_image:
            channels.insert(0, self._normalise(image.to(self.texture.dtype), region))
        pool = torch.stack(channels)
        return convert_to_dst_type(pool, dst=img, dtype=self.texture.dtype)[0]
