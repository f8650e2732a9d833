"""``LoadCT``/``LoadCTd``: CT volumes (NIfTI, NRRD, DICOM series folder) in Hounsfield units, reoriented to RAS."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import ITKReader, MetaTensor, NibabelReader
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform, Orientation, Transform
from monai.utils import TransformBackends, ensure_tuple

from monai_osteo.data.readers.array import _DICOM_TAG_KEY, SUPPORTED_SUFFIXES, _shared_loader
from monai_osteo.data.readers.dicom_series import PositionSortedReader, scan_series
from monai_osteo.data.readers.errors import CTReadError

__all__ = ["CTReadError", "LoadCT", "LoadCTD", "LoadCTDict", "LoadCTd"]

logger = logging.getLogger(__name__)

_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # every reader below returns its affine in RAS world coordinates
_FORMAT_NAMES = {"nifti": "NIfTI", "nrrd": "NRRD", "dicom": "DICOM series"}


class LoadCT(Transform):
    """Load a CT volume as a float32 MetaTensor (1, X, Y, Z) in Hounsfield units, in the RAS frame.

    Why not :class:`~monai_osteo.data.readers.LoadRadiograph`: it refuses DICOM volumes, min-max normalises by
    default and keeps the file's storage order, so a vertebra's axis and a voxel's HU depend on the exporter. Here
    every input is read by an explicit MONAI reader through one :class:`monai.transforms.LoadImage`:

    - NIfTI (.nii, .nii.gz) -> ``NibabelReader`` (voxel order as saved, affine from the header, scl_slope/scl_inter
      applied by nibabel).
    - NRRD (.nrrd, .nhdr) -> ``ITKReader(reverse_indexing=False)`` (voxel order as saved by pynrrd; ITK turns any
      NRRD ``space`` into LPS and MONAI converts to RAS; ``NrrdReader`` fails on files without space directions).
    - a folder holding one DICOM series -> ``PydicomReader`` on the folder. MONAI 1.5 applies RescaleSlope and
      RescaleIntercept per slice (so stored values become HU) and builds the affine from ImageOrientationPatient,
      PixelSpacing and the first and last ImagePositionPatient, converted from DICOM's LPS to RAS. It does not check
      SeriesInstanceUID (two series become one interleaved stack), sorts by InstanceNumber and averages the slice
      distances (a missing slice silently stretches the stack). So the headers are checked first: one series, the
      same orientation, pixel spacing and size in every slice, evenly spaced positions along the slice normal; the
      slices are then stacked in position order, and only the checked files are read.

    The array is then reoriented with ``monai.transforms.Orientation(axcodes="RAS")`` (nibabel's convention): array
    axes 0, 1, 2 point to the patient's Right, Anterior and Superior, i.e. the index along axis 0 grows from the
    patient's left to right, along axis 1 from back to front, along axis 2 from feet to head, and the affine maps
    voxel indices to RAS+ world millimetres with a positive diagonal for axis-aligned scans. Values are not windowed,
    clipped or normalised. Orientation is recorded in ``applied_operations`` (invertible with ``Invertd``).

    Metadata (``MetaTensor.meta``): ``affine`` (RAS world, mm, after reorientation), ``original_affine`` (the
    reader's RAS affine in the file's voxel order), ``spacing`` (3 floats, mm, per output axis),
    ``original_axcodes`` (e.g. "LPS"), ``original_shape``, ``spatial_shape``, ``value_range`` (min, max HU),
    ``modality`` and ``series_uid`` ("" when not DICOM), ``reader``, ``filename_or_obj`` and the reader's own keys.
    Raw DICOM tags (8-hex-digit keys) are dropped unless ``keep_dicom_header=True``: they differ between files and
    break batch collation.

    A logging warning (not an error) flags values with nothing below 0 HU: a CT in HU has air near -1000, so these
    are probably raw stored values (missing rescale intercept, usually -1024) or already normalised.

    - [0] DICOM PS3.3 C.7.6.2, Image Plane Module (ImagePositionPatient, ImageOrientationPatient, PixelSpacing).
    - [1] nibabel documentation, "Coordinate systems and affines" (RAS+ world space).

    Args:
        axcodes: target orientation for ``Orientation``; "RAS" (default) as described above, e.g. "LPS" for ITK's
            world frame.
        keep_dicom_header: keep the first slice's DICOM tags (pydicom JSON model) in the metadata.
        allow_constant: accept constant volumes (e.g. a label map without any label).
        warn_not_hu: log a warning when the values do not look like HU.

    Raises:
        CTReadError: (a ``ValueError``) for a missing path, an empty, corrupt or unsupported file, a single DICOM file,
            a 2-D or 4-D image, a folder with several series or a missing slice, NaN/Inf or constant values, and a
            header without usable voxel spacing; the message names the file and the fix.

    Example::

        ct = LoadCT()("spine.nii.gz")  # MetaTensor (1, X, Y, Z), float32 HU, axes towards R, A, S
        ct.meta["spacing"]  # array([0.7, 0.7, 2.5])
    """

    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        axcodes: str = "RAS",
        keep_dicom_header: bool = False,
        allow_constant: bool = False,
        warn_not_hu: bool = True,
    ) -> None:
        if not isinstance(axcodes, str) or len(axcodes) != 3:
            raise ValueError(f"axcodes must be three orientation letters such as 'RAS', got {axcodes!r}.")
        self.axcodes = axcodes
        self.keep_dicom_header = keep_dicom_header
        self.allow_constant = allow_constant
        self.warn_not_hu = warn_not_hu
        self._loader = _shared_loader()
        self._readers: dict = {"nifti": NibabelReader()}  # NRRD: ITKReader on first use (itk optional)
        self._orient = Orientation(axcodes=axcodes, labels=_RAS_LABELS)

    def __call__(self, filename: str | os.PathLike) -> MetaTensor | torch.Tensor:
        """Load one CT volume.

        Args:
            filename: a NIfTI or NRRD file, or a folder holding the slices of one DICOM series.

        Returns:
            float32 MetaTensor of shape (1, X, Y, Z) in HU, axes ordered by ``axcodes``. A plain tensor (same
            values and order) when MONAI's ``set_track_meta(False)`` is in effect.
        """
        if not isinstance(filename, (str, os.PathLike)):
            raise CTReadError(repr(filename), "expected a path (str or os.PathLike) to a file or DICOM folder.")
        path = os.path.expanduser(os.fspath(filename))
        fmt = self._check_path(path)
        series = scan_series(path) if fmt == "dicom" else {}
        img, header = self._read(path, fmt, series)
        arr = np.asarray(img, dtype=np.float32)
        original_shape = tuple(int(s) for s in arr.shape)
        while arr.ndim > 2 and arr.shape[-1] == 1:  # (X, Y, Z, 1) is a volume, (X, Y, 1) an image
            arr = arr[..., 0]
        self._check_array(path, arr, original_shape)
        affine = np.asarray(header["affine"], dtype=np.float64)
        self._check_affine(path, affine)
        meta = {k: v for k, v in header.items() if self.keep_dicom_header or not _DICOM_TAG_KEY.match(str(k))}
        meta.pop("lastImagePositionPatient", None)
        lo, hi = float(arr.min()), float(arr.max())
        meta.update(
            affine=torch.as_tensor(affine),
            original_shape=original_shape,
            original_axcodes="".join(_axcodes(affine)),
            reader={"nifti": "NibabelReader", "nrrd": "ITKReader"}.get(fmt, "PydicomReader"),
            value_range=(lo, hi),
            modality=series.get("modality", ""),
            series_uid=series.get("series_uid", ""),
        )
        if fmt == "dicom" and meta["modality"] not in ("CT", ""):
            logger.warning("%s: its Modality is %r, not 'CT'; loaded anyway.", path, meta["modality"])
        if self.warn_not_hu and lo >= 0:
            why = " and the series has no RescaleIntercept" if fmt == "dicom" and not series["rescaled"] else ""
            logger.warning(
                "%s: its values span [%g, %g] with nothing below 0%s; CT in Hounsfield units has air near -1000, so "
                "these look like raw stored values (add the rescale intercept, usually -1024) or normalised values. "
                "Loaded unchanged.",
                path,
                lo,
                hi,
                why,
            )
        out = self._orient(MetaTensor(torch.from_numpy(np.ascontiguousarray(arr[None])), meta=meta))
        if isinstance(out, MetaTensor):
            out.meta["spacing"] = np.asarray(affine_to_spacing(out.affine, r=3), dtype=np.float64)
            out.meta["spatial_shape"] = np.asarray(out.shape[1:])
        return out

    def _check_path(self, path: str) -> str:
        """Return "nifti", "nrrd" or "dicom" (a folder), or raise for missing, empty and unsupported paths."""
        if not os.path.exists(path):
            raise CTReadError(path, "the path does not exist; check the path and the datalist.")
        if os.path.isdir(path):
            return "dicom"
        if os.path.getsize(path) == 0:
            raise CTReadError(path, "the file is empty (0 bytes); the copy or export probably failed.")
        name = path.lower()
        for fmt in ("nifti", "nrrd"):
            if name.endswith(SUPPORTED_SUFFIXES[fmt]):
                return fmt
        from pydicom.misc import is_dicom

        if name.endswith(SUPPORTED_SUFFIXES["dicom"]) or is_dicom(path):
            raise CTReadError(
                path, "it is a single DICOM file but a CT volume was expected; pass the folder of the series."
            )
        raise CTReadError(
            path,
            "unsupported file type; expected a NIfTI (.nii, .nii.gz) or NRRD (.nrrd, .nhdr) file, or a folder "
            "holding one DICOM series.",
        )

    def _read(self, path: str, fmt: str, series: dict) -> tuple[torch.Tensor, dict]:
        """Call MONAI ``LoadImage`` with the reader of ``fmt``; translate every library error."""
        if fmt == "dicom":  # a reader per call: fname_regex selects exactly the checked slices of the series
            names = "|".join(re.escape(n) for n in series["files"])
            reader = PositionSortedReader(
                fname_regex=rf"(?:.*[/\\])?(?:{names})$", prune_metadata=not self.keep_dicom_header
            )
        else:
            if fmt not in self._readers:
                self._readers[fmt] = ITKReader(reverse_indexing=False)
            reader = self._readers[fmt]
        try:
            return self._loader(path, reader=reader)
        except Exception as e:
            detail = " ".join(str(e).split())[:300]
            raise CTReadError(
                path,
                f"{type(reader).__name__} could not decode it ({type(e).__name__}: {detail}); the file is probably "
                f"truncated, corrupt or not a {_FORMAT_NAMES[fmt]}; re-export it.",
            ) from e

    def _check_array(self, path: str, arr: np.ndarray, original_shape: tuple[int, ...]) -> None:
        """Refuse 2-D, 4-D, empty, non-finite and (unless allowed) constant volumes."""
        if arr.ndim != 3:
            fix = (
                "a CT volume was expected; pass the 3-D volume (or the folder of the DICOM series)"
                if arr.ndim < 3
                else "a single 3-D CT volume was expected; save one volume per file (e.g. nibabel img.slicer[..., 0])"
            )
            raise CTReadError(path, f"its array has shape {original_shape} ({arr.ndim}-D); {fix}.")
        if arr.size == 0:
            raise CTReadError(path, f"its array is empty, shape {original_shape}; re-export it.")
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        if n_bad:
            raise CTReadError(
                path,
                f"{n_bad} of its {arr.size} voxels are NaN or Inf; fix the export or replace them "
                "(e.g. numpy.nan_to_num) and save again.",
            )
        if not self.allow_constant and not arr.max() > arr.min():
            raise CTReadError(
                path,
                f"the volume is constant (every voxel = {float(arr.min()):g}), so it holds no image; check the export.",
            )

    @staticmethod
    def _check_affine(path: str, affine: np.ndarray) -> None:
        """Refuse affines with NaN, zero or collinear voxel axes."""
        lin = affine[:3, :3]
        spacing = np.linalg.norm(lin, axis=0)
        ok = np.isfinite(affine).all() and (spacing > 1e-6).all()
        if not ok or abs(np.linalg.det(lin)) <= 1e-6 * np.prod(spacing):
            raise CTReadError(
                path,
                f"its header gives no usable voxel spacing (spacing {np.round(spacing, 4).tolist()} mm, affine "
                f"{np.round(affine[:3], 4).tolist()}); set the voxel spacing in the header (NIfTI pixdim/sform, NRRD "
                "space directions, DICOM PixelSpacing and ImagePositionPatient) and save again.",
            )


def _axcodes(affine: np.ndarray) -> tuple[str, ...]:
    import nibabel as nib

    return nib.aff2axcodes(affine, labels=_RAS_LABELS)


def _grid(x: torch.Tensor) -> tuple[tuple[int, ...], np.ndarray | None]:
    return tuple(x.shape[1:]), np.asarray(x.affine, dtype=np.float64) if isinstance(x, MetaTensor) else None


def _grid_mismatch(label: torch.Tensor, image: torch.Tensor) -> str | None:
    """None when both lie on the same grid (shape, origin/spacing within 1e-3 mm, directions within 1e-4)."""
    (ls, la), (cs, ca) = _grid(label), _grid(image)
    same = ls == cs
    if la is not None and ca is not None:
        lsp, csp = np.linalg.norm(la[:3, :3], axis=0), np.linalg.norm(ca[:3, :3], axis=0)
        same = (
            same
            and np.abs(la[:3, 3] - ca[:3, 3]).max() <= 1e-3
            and np.abs(lsp - csp).max() <= 1e-3
            and np.abs(la[:3, :3] / lsp - ca[:3, :3] / csp).max() <= 1e-4
        )
    if same:
        return None

    def describe(shape, affine):
        if affine is None:
            return f"shape {shape}"
        spacing = np.round(np.linalg.norm(affine[:3, :3], axis=0), 4).tolist()
        return f"shape {shape}, spacing {spacing} mm, origin {np.round(affine[:3, 3], 3).tolist()} mm"

    return f"label map {describe(ls, la)}, CT {describe(cs, ca)} (after reorientation)"


class LoadCTd(MapTransform):
    """Dictionary-based wrapper of :class:`LoadCT` that also loads label maps on the CT grid.

    Every key is loaded with :class:`LoadCT`; the CT (``image_key``) first. Label maps (``label_keys``, e.g. a
    vertebra label map from a segmentation tool) are reoriented the same way, may be constant (no label) and must
    hold integer values and lie on the CT grid: the same shape, origin and spacing within 1e-3 mm and directions
    within 1e-4 after reorientation (a label map stored in another axis order but on the same grid is accepted).
    Label maps come back as float32 MetaTensors, like MONAI's ``LoadImage``, so MONAI's spatial transforms take them
    as they are; cast with ``CastToTyped`` where integer labels are needed.

    Args:
        keys: keys of the paths to load. See also: :py:class:`monai.transforms.compose.MapTransform`.
        label_keys: the keys among ``keys`` that hold label maps.
        image_key: the CT key the label maps must match; None takes the first key that is not a label key.
        axcodes: target orientation, see :class:`LoadCT`.
        keep_dicom_header: keep every DICOM tag of the first slice in the metadata.
        warn_not_hu: log a warning when a CT's values do not look like HU (never for label maps).
        allow_missing_keys: don't raise if a key is missing.

    Raises:
        CTReadError: see :class:`LoadCT`; also for a label map with non-integer values or off the CT grid, naming
            both files and the fix.
    """

    backend = LoadCT.backend

    def __init__(
        self,
        keys: KeysCollection,
        label_keys: KeysCollection = (),
        image_key: str | None = "image",
        axcodes: str = "RAS",
        keep_dicom_header: bool = False,
        warn_not_hu: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_keys = ensure_tuple(label_keys)
        unknown = [k for k in self.label_keys if k not in self.keys]
        if unknown:
            raise ValueError(f"label_keys must be among keys {self.keys!r}, got {unknown!r}.")
        if image_key is None:
            image_key = next((k for k in self.keys if k not in self.label_keys), None)
        if self.label_keys and (image_key not in self.keys or image_key in self.label_keys):
            raise ValueError(
                f"image_key must name the CT among keys {self.keys!r} and not be a label key, got {image_key!r}; "
                "pass image_key=<the CT key>."
            )
        self.image_key = image_key
        self.loader = LoadCT(axcodes=axcodes, keep_dicom_header=keep_dicom_header, warn_not_hu=warn_not_hu)
        self.label_loader = LoadCT(
            axcodes=axcodes, keep_dicom_header=keep_dicom_header, allow_constant=True, warn_not_hu=False
        )

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        """
        Args:
            data: mapping whose ``keys`` entries are paths.

        Returns:
            a shallow copy of ``data`` with those entries replaced by MetaTensors (1, X, Y, Z).
        """
        d = dict(data)
        for key in sorted(self.key_iterator(d), key=lambda k: k in self.label_keys):  # CT before label maps
            if key not in self.label_keys:
                d[key] = self.loader(d[key])
                continue
            path = str(d[key])
            label = self.label_loader(d[key])
            values = label.as_tensor() if isinstance(label, MetaTensor) else label
            frac = values != torch.round(values)
            if frac.any():
                raise CTReadError(
                    path,
                    f"{int(frac.sum())} of its {values.numel()} voxels are not integers (e.g. "
                    f"{float(values[frac][0]):g}); a label map must hold integer labels; was it resampled with linear "
                    "interpolation? resample with mode='nearest'.",
                )
            image = d.get(self.image_key)
            if isinstance(image, torch.Tensor):
                problem = _grid_mismatch(label, image)
                if problem:
                    raise CTReadError(
                        path,
                        f"it does not lie on the grid of the CT {str(data[self.image_key])!r}: {problem}; resample "
                        "the label map onto the CT grid, e.g. with monai.transforms.ResampleToMatch(mode='nearest').",
                    )
            d[key] = label
        return d


LoadCTD = LoadCTDict = LoadCTd
