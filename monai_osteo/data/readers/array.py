"""``LoadRadiograph``: MONAI ``LoadImage`` plus the radiograph conventions MONAI's readers leave out."""

from __future__ import annotations

import functools
import logging
import os
import re
import warnings
from typing import Any

import numpy as np
import torch
from monai.data import ITKReader, MetaTensor, NibabelReader, PILReader, PydicomReader, get_track_meta
from monai.data.utils import affine_to_spacing
from monai.transforms import LoadImage, Transform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_to_tensor

from monai_osteo.data.readers.errors import RadiographReadError
from monai_osteo.data.readers.functional import (
    apply_voi_window,
    min_max_normalize,
    rgb_to_gray,
    valid_spacing,
)

__all__ = ["SUPPORTED_SUFFIXES", "LoadRadiograph"]

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = {
    "dicom": (".dcm", ".dicom", ".dic"),
    "pil": (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"),
    "nifti": (".nii", ".nii.gz"),
    "nrrd": (".nrrd", ".nhdr"),
}
"""File suffixes per format; DICOM files without a suffix are recognised by their ``DICM`` preamble."""

_FORMAT_NAMES = {"dicom": "DICOM", "pil": "PNG/JPEG/TIFF/BMP", "nifti": "NIfTI", "nrrd": "NRRD"}
_DICOM_TAG_KEY = re.compile(r"^[0-9A-Fa-f]{8}$")
_PIL_NATIVE_MODES = ("L", "LA", "RGB", "RGBA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")


class _ReadProblem(ValueError):
    """Raised inside a reader callback; turned into a :class:`RadiographReadError` naming the file."""


def _pil_converter(img):
    """PILReader converter: refuse multi-page files, turn bilevel/palette/exotic modes into L/RGB/RGBA."""
    n_frames = getattr(img, "n_frames", 1)
    if n_frames > 1:
        raise _ReadProblem(f"it holds {n_frames} pages/frames; save each radiograph as a single-page image.")
    if img.mode in _PIL_NATIVE_MODES:
        return img
    if img.mode == "1":
        return img.convert("L")
    if img.mode in ("P", "PA"):
        return img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    return img.convert("RGB")


@functools.lru_cache(maxsize=1)
def _shared_loader() -> LoadImage:
    """One ``LoadImage`` for all instances: it is only ever called with an explicit runtime reader, so its default
    readers (built in its constructor, which warns about the optional nvImageCodec plugin) are never used."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
        return LoadImage(image_only=False, dtype=np.float32)  # the header also comes back under set_track_meta(False)


def _values(meta: dict, tag: str) -> list | None:
    """Values of a DICOM tag in a pydicom JSON-model header (``{"00280004": {"vr": "CS", "Value": [...]}}``)."""
    item = meta.get(tag)
    return item.get("Value") if isinstance(item, dict) else None


def _first(meta: dict, tag: str, default: Any = None) -> Any:
    vals = _values(meta, tag)
    return vals[0] if vals else default


def _chroma(arr: np.ndarray) -> float:
    """How coloured a channel-last image is: mean |channel - mean of R, G, B| over its value range (0 = gray)."""
    rgb = arr[..., :3]
    span = float(rgb.max() - rgb.min())
    if not span > 0:
        return 0.0
    return float(np.abs(rgb - rgb.mean(-1, keepdims=True)).mean() / span)


class LoadRadiograph(Transform):
    """Load a radiograph (or a CT volume) as a channel-first float32 MetaTensor with bone bright.

    Built on :class:`monai.transforms.LoadImage`: one ``LoadImage`` instance is called with a reader chosen per
    file type (never MONAI's suffix-based fallback chain, which silently swaps readers and conventions):

    - DICOM -> ``PydicomReader(swap_ij=False, prune_metadata=False)``. It returns the stored values with the
      modality rescale (slope/intercept) already applied, typed tag values (pydicom JSON model, e.g.
      ``meta["00280004"]["Value"]``) and, with ``swap_ij=False``, rows x cols. ``ITKReader`` is not used for
      DICOM: with ITK 5.4 (GDCM) it silently inverts MONOCHROME1 pixel data while still reporting
      ``"0028|0004" = "MONOCHROME1"`` (so the tag cannot tell whether inversion is still needed), transposes
      to (cols, rows, 1) and reports spacing 1 where PixelSpacing is invalid. Compressed transfer syntaxes need
      the matching pydicom decoder plugin (Pillow covers JPEG baseline and JPEG 2000; JPEG-lossless needs
      ``pylibjpeg pylibjpeg-libjpeg``); the error message says so.
    - PNG/JPEG/TIFF/BMP -> ``PILReader(reverse_indexing=False)`` so rows stay rows (MONAI's default
      transposes 2-D images to (W, H)). Its converter turns bilevel/palette images into L/RGB(A) and refuses
      multi-page files; 8/16-bit gray is kept as is, RGB(A) is converted to gray with the ITU-R BT.601 weights.
    - NIfTI -> ``NibabelReader``; NRRD -> ``ITKReader(reverse_indexing=False)`` (``NrrdReader`` fails on files
      without ``space directions``). Both return the voxel index order (i, j[, k]), i.e. exactly the array
      that was saved with nibabel or pynrrd, and the spacing from the header.

    Then, in this order: RGB -> gray; trailing singleton dimensions dropped (ITK's DICOM/NRRD ``(..., 1)``);
    dimensionality checked against ``spatial_dims``; NaN/Inf and constant images refused; with
    ``normalize=True`` the VOI window (first WindowCenter/WindowWidth value, VOI LUT Function LINEAR,
    LINEAR_EXACT or SIGMOID) is applied if present and ``use_voi``, MONOCHROME1 is inverted and the result is
    min-max normalised to [0, 1]. With ``normalize=False`` the modality values (after rescale) are returned
    unchanged: no window, no inversion, so quantities such as HU survive.

    Metadata added to ``MetaTensor.meta`` (collate-friendly types):
    ``pixel_spacing`` (row_mm, col_mm), NaN when unknown; ``pixel_spacing_source`` ("PixelSpacing",
    "ImagerPixelSpacing", "header" or "unknown"); ``spacing`` (per spatial axis, 1 where unknown) and
    ``affine`` consistent with it; ``photometric_interpretation``; ``modality`` and ``body_part`` (DICOM
    Modality and BodyPartExamined, "" when absent); ``chroma`` (how coloured the stored image was, 0 for gray, see
    ``_chroma``: a colour photograph is not a radiograph); ``inverted``; ``windowed``;
    ``window`` (center, width), NaN when not applied; ``rescale`` (slope, intercept); ``normalized``;
    ``value_range`` (min, max) of the values before windowing and normalisation; ``original_shape`` (the
    reader's array shape); ``reader``; plus ``filename_or_obj`` and the reader's own keys. Raw DICOM tags
    (8-hex-digit keys) are dropped unless ``keep_dicom_header=True``, because they differ between files and
    break batch collation.

    Args:
        spatial_dims: 2 for a radiograph (output (1, H, W)), 3 for a volume (output (1, H, W, D)).
        normalize: min-max normalise to [0, 1] after windowing/inversion; False keeps the modality values.
        use_voi: apply the DICOM VOI window when the file has one (only with ``normalize=True``).
        keep_dicom_header: keep every DICOM tag (pydicom JSON model) in the metadata.
        allow_constant: accept constant images (with ``normalize=False``), e.g. a label map without any label.

    Raises:
        RadiographReadError: (a ``ValueError``) for missing, empty, truncated, corrupt, unsupported, wrongly
            dimensioned, non-finite or constant images; the message names the file and the fix.

    Example::

        img = LoadRadiograph()("hand.dcm")  # MetaTensor (1, H, W), float32 in [0, 1], bone bright
        img.meta["pixel_spacing"]  # (0.1, 0.1)
    """

    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        spatial_dims: int = 2,
        normalize: bool = True,
        use_voi: bool = True,
        keep_dicom_header: bool = False,
        allow_constant: bool = False,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 (radiograph) or 3 (volume), got {spatial_dims!r}.")
        self.spatial_dims = spatial_dims
        self.normalize = normalize
        self.use_voi = use_voi
        self.keep_dicom_header = keep_dicom_header
        if allow_constant and normalize:
            raise ValueError("allow_constant=True needs normalize=False (a constant image cannot be normalised).")
        self.allow_constant = allow_constant
        self._loader = _shared_loader()
        self._readers = {
            "dicom": PydicomReader(swap_ij=False, prune_metadata=False),
            "pil": PILReader(converter=_pil_converter, reverse_indexing=False),
            "nifti": NibabelReader(),
            "nrrd": ITKReader(reverse_indexing=False),
        }

    def __call__(self, filename: str | os.PathLike) -> MetaTensor | torch.Tensor:
        """Load one file.

        Args:
            filename: path to a DICOM, PNG, JPEG, TIFF, BMP, NIfTI or NRRD file.

        Returns:
            float32 MetaTensor of shape (1, H, W) (``spatial_dims=2``) or (1, H, W, D) (``spatial_dims=3``);
            H is the number of rows, row 0 is the top row as a viewer shows it. A plain tensor when MONAI's
            ``set_track_meta(False)`` is in effect.
        """
        if not isinstance(filename, (str, os.PathLike)):
            raise RadiographReadError(repr(filename), "expected a file path (str or os.PathLike).")
        path = os.path.expanduser(os.fspath(filename))
        fmt = self._check_file(path)
        img, header = self._read(path, fmt)
        arr = np.asarray(img, dtype=np.float64)
        meta = dict(header)
        meta["original_shape"] = tuple(int(s) for s in arr.shape)
        meta["reader"] = type(self._readers[fmt]).__name__
        meta.setdefault("modality", "")
        meta.setdefault("body_part", "")
        meta["chroma"] = _chroma(arr) if arr.ndim == 3 and arr.shape[-1] >= 3 else 0.0
        meta["rescale"] = (1.0, 0.0)
        window = None
        if fmt == "dicom":
            arr, window = self._dicom(path, arr, meta)
        else:
            if fmt == "pil" and arr.ndim == 3:
                meta["photometric_interpretation"] = "RGB" if arr.shape[-1] >= 3 else "MONOCHROME2"
                arr = rgb_to_gray(arr)
            meta.setdefault("photometric_interpretation", "MONOCHROME2")
        while arr.ndim > self.spatial_dims and arr.shape[-1] == 1:
            arr = arr[..., 0]
        self._check_array(path, arr)
        if fmt in ("nifti", "nrrd"):
            spacing = affine_to_spacing(np.asarray(meta["affine"], dtype=np.float64), r=arr.ndim)
            meta["spacing"] = np.asarray(spacing, dtype=np.float64)
            meta["pixel_spacing"] = (float(spacing[0]), float(spacing[1]))
            meta["pixel_spacing_source"] = "header"
        elif fmt == "pil":
            meta["spacing"] = np.ones(2)
            meta["pixel_spacing"] = (float("nan"), float("nan"))
            meta["pixel_spacing_source"] = "unknown"
        out, meta = self._intensity(path, arr, meta, window)
        meta["spatial_shape"] = np.asarray(out.shape)
        meta["original_channel_dim"] = float("nan")
        tensor = convert_to_tensor(out[None].astype(np.float32), track_meta=False)
        return MetaTensor(tensor, meta=meta) if get_track_meta() else tensor

    def _check_file(self, path: str) -> str:
        """Return the format key of ``path`` or raise if it is missing, empty or of an unknown type."""
        if not os.path.exists(path):
            raise RadiographReadError(path, "the file does not exist; check the path and the datalist.")
        if os.path.isdir(path):
            raise RadiographReadError(
                path, "it is a directory; pass a single image file (DICOM series folders are not supported)."
            )
        if os.path.getsize(path) == 0:
            raise RadiographReadError(path, "the file is empty (0 bytes); the copy or export probably failed.")
        name = path.lower()
        for fmt, suffixes in SUPPORTED_SUFFIXES.items():
            if name.endswith(suffixes):
                if fmt == "dicom" and self.spatial_dims == 3:
                    raise RadiographReadError(
                        path, "DICOM volumes are not supported; convert the series to NIfTI or NRRD first."
                    )
                return fmt
        from pydicom.misc import is_dicom

        if is_dicom(path):
            return "dicom"
        known = ", ".join(s for suffixes in SUPPORTED_SUFFIXES.values() for s in suffixes)
        raise RadiographReadError(path, f"unsupported file type; expected one of {known} or a DICOM file.")

    def _read(self, path: str, fmt: str) -> tuple[torch.Tensor, dict]:
        """Call MONAI ``LoadImage`` with the reader of ``fmt``; translate every library error."""
        reader = self._readers[fmt]
        try:
            with warnings.catch_warnings():
                # radiographs rarely carry ImageOrientationPatient/ImagePositionPatient; the affine is rebuilt below
                warnings.filterwarnings("ignore", message="PydicomReader: ImageOrientationPatient")
                return self._loader(path, reader=reader)
        except _ReadProblem as e:
            raise RadiographReadError(path, str(e)) from e
        except Exception as e:
            detail = " ".join(str(e).split())[:300]
            hint = f"the file is probably truncated, corrupt or not a {_FORMAT_NAMES[fmt]} file; re-export it."
            if fmt == "dicom" and ("decompress" in detail or "missing dependencies" in detail):
                hint = (
                    "its compressed transfer syntax needs a pydicom decoder plugin, e.g. "
                    "`pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg`, or decompress it first."
                )
            raise RadiographReadError(
                path, f"{type(reader).__name__} could not decode it ({type(e).__name__}: {detail}); {hint}"
            ) from e

    def _dicom(self, path: str, arr: np.ndarray, meta: dict) -> tuple[np.ndarray, tuple[float, float, str] | None]:
        """Gray conversion, spacing/affine and VOI window of a DICOM image; ``arr`` is (rows, cols[, samples])."""
        photometric = str(_first(meta, "00280004", "MONOCHROME2")).strip().upper()
        samples = int(_first(meta, "00280002", 1) or 1)
        if photometric == "PALETTE COLOR":
            raise RadiographReadError(path, "PALETTE COLOR DICOM is not supported; export it as MONOCHROME2.")
        if arr.ndim - (samples > 1) > 2:
            raise RadiographReadError(
                path,
                f"it is a multi-frame DICOM with pixel array shape {tuple(arr.shape)} (3-D) but a 2-D radiograph "
                "was expected; extract a single frame, or convert the volume to NIfTI and use spatial_dims=3.",
            )
        if samples > 1 and arr.ndim == 3:
            arr = rgb_to_gray(arr)
        meta["photometric_interpretation"] = photometric
        meta["modality"] = str(_first(meta, "00080060", "")).strip()
        meta["body_part"] = str(_first(meta, "00180015", "")).strip()
        meta["rescale"] = (float(_first(meta, "00281053", 1.0)), float(_first(meta, "00281052", 0.0)))

        spacing, source = None, "unknown"
        for tag, name in (("00280030", "PixelSpacing"), ("00181164", "ImagerPixelSpacing")):
            spacing = valid_spacing(_values(meta, tag))
            if spacing is not None:
                source = name
                break
            if _values(meta, tag) is not None:
                logger.warning("%s: ignoring invalid %s %s.", path, name, _values(meta, tag))
        meta["pixel_spacing"] = spacing if spacing is not None else (float("nan"), float("nan"))
        meta["pixel_spacing_source"] = source
        row_mm, col_mm = spacing if spacing is not None else (1.0, 1.0)
        if "00200037" in meta and "00200032" in meta:  # patient frame known: keep direction, fix spacing
            affine = np.array(meta["affine"], dtype=np.float64)
            for axis, mm in ((0, row_mm), (1, col_mm)):
                affine[:3, axis] *= mm / max(np.linalg.norm(affine[:3, axis]), 1e-12)
        else:
            affine = np.diag([row_mm, col_mm, 1.0, 1.0])
        meta["affine"] = meta["original_affine"] = torch.as_tensor(affine)
        meta["spacing"] = np.array([row_mm, col_mm])
        centers, widths = _values(meta, "00281050"), _values(meta, "00281051")
        window = None
        if centers and widths:
            window = (float(centers[0]), float(widths[0]), str(_first(meta, "00281056", "LINEAR")).strip())
        if not self.keep_dicom_header:
            for key in [k for k in meta if _DICOM_TAG_KEY.match(str(k))]:
                del meta[key]
        return arr, window

    def _intensity(
        self, path: str, arr: np.ndarray, meta: dict, window: tuple[float, float, str] | None
    ) -> tuple[np.ndarray, dict]:
        """VOI window, MONOCHROME1 inversion and min-max normalisation (only with ``normalize=True``)."""
        meta["value_range"] = (float(arr.min()), float(arr.max()))
        meta["normalized"] = self.normalize
        meta["windowed"] = meta["inverted"] = False
        meta["window"] = (float("nan"), float("nan"))
        if not self.normalize:
            return arr, meta
        x = arr
        if window is not None and self.use_voi:
            try:
                x = apply_voi_window(arr, *window)
            except ValueError as e:
                logger.warning("%s: ignoring its VOI window: %s", path, e)
            else:
                meta["windowed"], meta["window"] = True, window[:2]
        if meta["photometric_interpretation"] == "MONOCHROME1":  # low values are bright: flip so bone is bright
            x = 1.0 - x if meta["windowed"] else -x
            meta["inverted"] = True
        try:
            return min_max_normalize(x), meta
        except ValueError as e:
            raise RadiographReadError(
                path,
                f"the image is constant after applying its VOI window (center {window[0]:g}, width {window[1]:g}); "
                "pass use_voi=False to normalise the full intensity range instead.",
            ) from e

    def _check_array(self, path: str, arr: np.ndarray) -> None:
        """Refuse wrong dimensionality, empty, non-finite and constant arrays."""
        if arr.ndim != self.spatial_dims:
            if arr.ndim > self.spatial_dims:
                fix = "pass spatial_dims=3 to load a volume, or save a single 2-D slice/frame."
            else:
                fix = "pass spatial_dims=2 to load a 2-D radiograph." if arr.ndim == 2 else "re-export the image."
            raise RadiographReadError(
                path,
                f"its pixel array has shape {tuple(arr.shape)} ({arr.ndim}-D after dropping trailing singleton "
                f"dimensions) but spatial_dims={self.spatial_dims} was requested; {fix}",
            )
        if arr.size == 0:
            raise RadiographReadError(path, f"its pixel array is empty, shape {tuple(arr.shape)}; re-export it.")
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        if n_bad:
            raise RadiographReadError(
                path,
                f"{n_bad} of its {arr.size} pixels are NaN or Inf; fix the export or replace them "
                "(e.g. numpy.nan_to_num) and save again.",
            )
        lo, hi = float(arr.min()), float(arr.max())
        if not hi > lo and not self.allow_constant:
            raise RadiographReadError(
                path, f"the image is constant (every pixel = {lo:g}), so it carries no image; check the export."
            )
