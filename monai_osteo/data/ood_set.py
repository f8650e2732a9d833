"""Out-of-distribution (OOD) evaluation set for the gates that make the hand screener refuse non-hand images.

``build_ood_set(out_dir)`` writes 85 images that are *not* hand/wrist radiographs, all from sources
available offline, plus a manifest ``ood_set.json`` (``{"seed": ..., "records": [...]}``). Each record names the
image (absolute path), its ``category``, its ``source``, a one-line ``description`` and what the screener should do
with it: ``"screen"`` (it loads, so the gates must refuse it) or ``"read_error"`` (``LoadRadiograph`` itself
refuses it with a ``RadiographReadError``). Files are named ``<category>_<nn>.<ext>`` (never after a DICOM
patient), written atomically, as PNG (8-bit for natural images, 16-bit where the source has more depth) or as
byte-exact copies of DICOM files. The same seed gives byte-identical files; the whole set takes a few seconds.

Categories (counts of the full set in this environment; the DICOM count depends on the installed files and the
pixel decoders, see below):

- ``dicom_other`` (20): real single-frame 2-D DICOM images of other modalities and anatomy from the
  ``pydicom-data`` package (``data_store/data``) and pydicom's bundled ``pydicom/data/test_files``: chest CR
  (``RG1_UNCR.dcm``) and lower-leg CR (``RG3_UNCR.dcm``), the two images a user tried; head and body CT
  (``693_UNCR.dcm``, ``CT_small.dcm``, ``J2K_pixelrep_mismatch.dcm``, ``explicit_VR-UN.dcm``), MR (``MR_small.dcm``,
  ``MR2_UNCR.dcm``, ``MR-SIEMENS-DICOM-WithOverlays.dcm``), ultrasound (``US1_UNCR.dcm``,
  ``examples_rgb_color.dcm``, ``ExplVR_BigEnd.dcm``), NM whole body (``JPEG2000_UNC.dcm``), RT dose
  (``rtdose_1frame.dcm``), secondary captures and test patterns (``SC_rgb.dcm``, ``mlut_18.dcm``,
  ``image_dfl.dcm``, a near-blank ``SC_rgb_jpeg_dcmd.dcm``, a 3x3 ``SC_rgb_small_odd.dcm``), plus matplotlib's
  ``sample_data/s1045.ima.gz`` (a raw 256x256 sagittal MR head slice, decoded with numpy, saved as 16-bit PNG).
  Every candidate is read with ``LoadRadiograph()``; only those it loads are kept (multi-frame, palette-colour,
  non-image and undecodable files are skipped), hand/wrist body parts are excluded and near-duplicates (the same
  image in another transfer syntax or after lossy compression: same shape and 32x32 thumbnails with correlation
  >= 0.95 or mean absolute difference <= 0.04; and three crops/downsized copies listed in ``_DICOM_SKIP``) are
  dropped, uncompressed files first. ``description`` records Modality and BodyPartExamined. OOD: the right kind of
  file, a plausible medical image, but not a hand.
- ``natural`` (32): the still images bundled in ``skimage/data`` (camera, astronaut, coffee, chelsea, coins, moon,
  page, text, horse, clock_motion, brick, grass, gravel, hubble_deep_field, retina, rocket, microaneurysms, cell,
  ihc, phantom (Shepp-Logan), logo, color, chessboard_GRAY, motorcycle_left; not chessboard_RGB and
  motorcycle_right, near-copies of two of these, nor the multi-page TIFFs and the GIF) and matplotlib's
  ``mpl-data/sample_data`` (grace_hopper.jpg, logo2.png, Minduka_Present_Blue_Pack.png), plus greyscale
  conversions of five colour photos (a grey photo must be refused too). Colour images stay colour (RGB or RGBA
  PNG) so an input gate can see it; images whose colour channels are identical are saved grey; the one image
  larger than 1024 px (retina) is downsized. OOD: photographs, micrographs, documents, graphics.
- ``phantom_no_hand`` (18): the project's own phantom machinery (``monai_osteo.data.phantoms``: ``place_hand``
  anatomy, ``render_hand`` attenuation line integrals, detector blur, quantum noise, collimation, side marker and
  display windowing) with the anatomy made wrong: hand soft tissue with every bone removed; bones replaced by a
  femur-like tube, rib-like arcs, a skull-like ellipsoid shell or random tubes; a knee (femur, tibia, fibula,
  patella in a thigh), a chest section (ribs and spine) and a skull in a head; the seven target bones (or every
  bone) scattered at random positions and angles; the long bones swapped between each other's places; the
  metacarpal/finger fan point-reflected through the carpus. Everything but the anatomy is the real phantom's
  rendering, so these isolate the anatomical-plausibility and feature-space gates. One category holds both the
  no-bone and the other-bone renderings; ``source`` ("phantom: soft tissue only", "phantom: bones scattered", ...)
  tells them apart.
- ``synthetic`` (15): uniform, Gaussian and smooth (low-pass) noise, a ramp, a radial gradient, a checkerboard,
  a sine grating, text-like word blocks, binary blobs, a 16x16 image, a 32x1024 strip, two phantom hands with
  inverted intensities (bone dark) and two constant images (``expect == "read_error"``). A phantom hand turned
  by 180 degrees is deliberately *not* here: it is still a hand radiograph.

Seeded files (the phantoms and the synthetic files whose ``source`` says "seeded") change with ``seed``; the
others are fixed. ``per_category=N`` keeps the first N images of each category (the same files as in the full
set), e.g. ``RG1_UNCR.dcm`` and ``RG3_UNCR.dcm`` for ``dicom_other``.

Command line::

    python -m monai_osteo.data.ood_set --out DIR [--seed S] [--per-category N] [--categories natural ...]

Only DICOM files that load in *this* environment are kept: without a JPEG 2000 decoder the two JPEG 2000-only CT
images are left out, without ``pydicom-data`` only pydicom's bundled files (and ``s1045``) remain.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import importlib.util
import itertools
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from monai_osteo.io import atomic_copy, atomic_write, atomic_write_json

__all__ = ["CATEGORIES", "MANIFEST_NAME", "build_ood_set", "main"]

logger = logging.getLogger("monai_osteo.data")

#: categories in manifest order
CATEGORIES: tuple[str, ...] = ("dicom_other", "natural", "phantom_no_hand", "synthetic")
MANIFEST_NAME = "ood_set.json"

_MAX_SIDE = 1024  # natural images are downsized to at most this many pixels on the long side
_PHANTOM_HEIGHT = 512  # phantom renderings: pixels along the 290 mm detector height (the cohort's field)
_STREAMS = {"phantom_no_hand": 3, "synthetic": 4}  # random streams (seed, stream, index) of the seeded categories


@dataclass(frozen=True)
class _Item:
    """One image of the set: ``make()`` returns the pixels to save as PNG (or a DICOM file to copy) and the
    description; it is only called for images that are written."""

    source: str
    make: Callable[[], tuple[np.ndarray | Path, str]]
    expect: str = "screen"


def _package_dir(name: str) -> Path | None:
    """Folder of an installed package, found without importing it; None if it is not installed."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


# ---------------------------------------------------------------------------------------------------------------
# dicom_other
# ---------------------------------------------------------------------------------------------------------------

#: taken first, in this order (so ``per_category`` subsets start with the chest and lower-leg CR a user tried)
_DICOM_FIRST = ("RG1_UNCR.dcm", "RG3_UNCR.dcm", "CT_small.dcm", "MR_small.dcm", "693_UNCR.dcm", "MR2_UNCR.dcm",
                "US1_UNCR.dcm")
#: near-duplicates of another kept file at a different size (the thumbnail check only compares equal shapes)
_DICOM_SKIP = {
    "examples_overlay.dcm": "a crop of MR-SIEMENS-DICOM-WithOverlays.dcm",
    "color-pl.dcm": "a downsized copy of examples_rgb_color.dcm",
    "color-px.dcm": "a downsized copy of examples_rgb_color.dcm",
}
_DICOM_NOTES = {
    "RG1_UNCR.dcm": "PA chest computed radiograph",
    "RG3_UNCR.dcm": "lower-leg (tibia and fibula) computed radiograph",
    "CT_small.dcm": "CT slice through a vertebra",
    "MR_small.dcm": "small MR slice",
    "693_UNCR.dcm": "head CT slice (CQ500)",
    "MR2_UNCR.dcm": "shoulder MR slice",
    "US1_UNCR.dcm": "ultrasound frame",
    "J2K_pixelrep_mismatch.dcm": "head CT slice",
    "explicit_VR-UN.dcm": "abdominal CT slice (pancreas)",
    "JPEG2000_UNC.dcm": "nuclear-medicine whole-body scan",
    "MR-SIEMENS-DICOM-WithOverlays.dcm": "abdominal MR slice",
    "examples_rgb_color.dcm": "colour ultrasound screen capture",
    "rtdose_1frame.dcm": "10x10 RT dose grid",
    "SC_rgb.dcm": "colour-bar secondary capture",
    "SC_rgb_small_odd.dcm": "3x3 colour secondary capture",
    "mlut_18.dcm": "SMPTE-like test pattern",
    "image_dfl.dcm": "synthetic squares pattern",
    "SC_rgb_jpeg_dcmd.dcm": "near-blank (almost white) colour secondary capture",
}
_HAND_WORDS = ("HAND", "WRIST", "FINGER", "THUMB", "CARP")
_MODALITY_NOTES = {"CR": "computed radiograph", "DX": "digital radiograph", "CT": "CT slice", "MR": "MR slice",
                   "US": "ultrasound image", "NM": "nuclear-medicine image", "OT": "secondary capture",
                   "RTDOSE": "RT dose grid", "": "image"}


def _dicom_dirs() -> list[tuple[Path, str]]:
    dirs = []
    data_store = _package_dir("data_store")
    if data_store is not None and (data_store / "data").is_dir():
        dirs.append((data_store / "data", "pydicom-data"))
    pydicom_dir = _package_dir("pydicom")
    if pydicom_dir is not None and (pydicom_dir / "data" / "test_files").is_dir():
        dirs.append((pydicom_dir / "data" / "test_files", "pydicom test_files"))
    return dirs


def _thumbnail(img: np.ndarray) -> np.ndarray:
    small = Image.fromarray(img.astype(np.float32)).resize((32, 32), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float64)


def _near_duplicate(a: tuple, b: tuple) -> bool:
    """Same shape and (almost) the same 32x32 thumbnail: one image in two transfer syntaxes or lossy-compressed."""
    if a[0] != b[0]:
        return False
    ta, tb = a[1], b[1]
    mad = float(np.abs(ta - tb).mean())
    sa, sb = float(ta.std()), float(tb.std())
    corr = float(((ta - ta.mean()) * (tb - tb.mean())).mean() / (sa * sb)) if sa > 0 and sb > 0 else 0.0
    return corr >= 0.95 or mad <= 0.04


@functools.lru_cache(maxsize=1)
def _dicom_candidates() -> tuple[tuple[Path, str, str], ...]:
    """(file, source, description) of every distinct single-frame 2-D DICOM image ``LoadRadiograph`` reads."""
    import pydicom

    from monai_osteo.data.readers import LoadRadiograph, RadiographReadError

    quiet = [logging.getLogger(name) for name in ("pydicom", "monai_osteo.data.readers.array")]
    levels = [log.level for log in quiet]
    for log in quiet:  # pydicom's notes on odd test files, "ignoring invalid PixelSpacing": not news here
        log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _scan_dicoms(pydicom, LoadRadiograph(), RadiographReadError)
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)


def _dicom_header(pydicom, path: Path):
    """The header of a single-frame, non-hand DICOM image, or None (not DICOM, no pixels, multi-frame, hand)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "Rows" not in ds or "Columns" not in ds or int(ds.get("NumberOfFrames", 1) or 1) != 1:
            return None  # no pixel data, or a multi-frame volume/cine that LoadRadiograph refuses
    except Exception:  # not a DICOM file (no preamble or meta), unreadable header: nothing a user would upload
        return None
    words = " ".join(str(ds.get(k, "")) for k in ("BodyPartExamined", "StudyDescription", "SeriesDescription"))
    return None if any(w in words.upper() for w in _HAND_WORDS) else ds


def _scan_dicoms(pydicom, loader, read_error) -> tuple[tuple[Path, str, str], ...]:
    files = []
    for folder, label in _dicom_dirs():
        for path in sorted(folder.glob("*.dcm")):
            ds = None if path.name in _DICOM_SKIP else _dicom_header(pydicom, path)
            if ds is None:
                continue
            meta = getattr(ds, "file_meta", None)
            tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
            compressed = bool(tsyntax is not None and tsyntax.is_compressed)
            first = _DICOM_FIRST.index(path.name) if path.name in _DICOM_FIRST else len(_DICOM_FIRST)
            files.append(((first, compressed, len(files)), path, label, ds, tsyntax))
    files.sort(key=lambda f: f[0])
    kept: list[tuple[Path, str, str]] = []
    seen: list[tuple] = []
    for _, path, label, ds, tsyntax in files:
        try:
            img = np.asarray(loader(path))[0]
        except read_error as e:
            logger.debug("OOD set: skipping %s: %s", path.name, e.problem)
            continue
        key = (img.shape, _thumbnail(img))
        if any(_near_duplicate(key, other) for other in seen):
            continue
        seen.append(key)
        modality = str(ds.get("Modality", "")).strip()
        body = str(ds.get("BodyPartExamined", "")).strip()
        note = _DICOM_NOTES.get(path.name, _MODALITY_NOTES.get(modality, "image"))
        syntax = tsyntax.name if tsyntax is not None else "unknown transfer syntax"
        description = (f"Modality {modality or 'not recorded'}, BodyPartExamined {body or 'not recorded'}: "
                       f"{note}; {img.shape[0]}x{img.shape[1]} {ds.get('PhotometricInterpretation', '')}, {syntax}")
        kept.append((path, f"{label} {path.name}", description))
    return tuple(kept)


def _s1045() -> tuple[np.ndarray, str]:
    path = _package_dir("matplotlib") / "mpl-data" / "sample_data" / "s1045.ima.gz"
    with gzip.open(path, "rb") as f:
        img = np.frombuffer(f.read(), dtype=">u2").reshape(256, 256).astype(np.uint16)
    return img, ("Modality MR (raw Siemens .ima pixel data, no header), BodyPartExamined not recorded: sagittal MR "
                 f"head slice; 256x256 big-endian uint16 (values {img.min()}-{img.max()}), saved as 16-bit PNG")


def _dicom_items(seed: int) -> Iterator[_Item]:
    for path, source, description in _dicom_candidates():
        yield _Item(source, lambda p=path, d=description: (p, d))
    mpl = _package_dir("matplotlib")
    if mpl is not None and (mpl / "mpl-data" / "sample_data" / "s1045.ima.gz").is_file():
        yield _Item("matplotlib sample_data s1045.ima.gz", _s1045)


# ---------------------------------------------------------------------------------------------------------------
# natural
# ---------------------------------------------------------------------------------------------------------------

#: (package, file, source name, what it shows, greyscale conversion)
_NATURAL = [
    ("skimage", "camera.png", "camera", "cameraman photograph", False),
    ("skimage", "astronaut.png", "astronaut", "portrait photograph of an astronaut", False),
    ("skimage", "coffee.png", "coffee", "photograph of a coffee cup", False),
    ("skimage", "chelsea.png", "chelsea", "photograph of a cat", False),
    ("skimage", "coins.png", "coins", "photograph of coins", False),
    ("skimage", "moon.png", "moon", "photograph of the lunar surface", False),
    ("skimage", "page.png", "page", "scanned page of text", False),
    ("skimage", "text.png", "text", "photograph of text on a sign", False),
    ("skimage", "horse.png", "horse", "horse silhouette", False),
    ("skimage", "clock_motion.png", "clock", "motion-blurred clock photograph", False),
    ("skimage", "brick.png", "brick", "brick wall texture", False),
    ("skimage", "grass.png", "grass", "grass texture", False),
    ("skimage", "gravel.png", "gravel", "gravel texture", False),
    ("skimage", "hubble_deep_field.jpg", "hubble_deep_field", "Hubble deep-field astronomical image", False),
    ("skimage", "retina.jpg", "retina", "fundus photograph of a retina", False),
    ("skimage", "rocket.jpg", "rocket", "photograph of a rocket launch", False),
    ("skimage", "microaneurysms.png", "microaneurysms", "retinal angiography crop with microaneurysms", False),
    ("skimage", "cell.png", "cell", "phase-contrast micrograph of a cell", False),
    ("skimage", "ihc.png", "immunohistochemistry", "immunohistochemistry micrograph", False),
    ("skimage", "phantom.png", "shepp_logan_phantom", "Shepp-Logan phantom", False),
    ("skimage", "logo.png", "logo", "scikit-image logo", False),
    ("skimage", "color.png", "colorwheel", "colour wheel", False),
    ("skimage", "chessboard_GRAY.png", "checkerboard", "chessboard photograph", False),
    ("skimage", "motorcycle_left.png", "stereo_motorcycle", "photograph of a motorcycle (left stereo view)", False),
    ("matplotlib", "grace_hopper.jpg", "grace_hopper.jpg", "portrait photograph of Grace Hopper", False),
    ("matplotlib", "logo2.png", "logo2.png", "matplotlib logo", False),
    ("matplotlib", "Minduka_Present_Blue_Pack.png", "Minduka_Present_Blue_Pack.png", "gift-box icon", False),
    ("skimage", "astronaut.png", "astronaut", "portrait photograph of an astronaut", True),
    ("skimage", "coffee.png", "coffee", "photograph of a coffee cup", True),
    ("skimage", "chelsea.png", "chelsea", "photograph of a cat", True),
    ("skimage", "rocket.jpg", "rocket", "photograph of a rocket launch", True),
    ("matplotlib", "grace_hopper.jpg", "grace_hopper.jpg", "portrait photograph of Grace Hopper", True),
]


def _natural_file(package: str, name: str) -> Path | None:
    root = _package_dir(package)
    if root is None:
        return None
    path = root / "data" / name if package == "skimage" else root / "mpl-data" / "sample_data" / name
    return path if path.is_file() else None


def _natural_image(path: Path, what: str, grey: bool) -> tuple[np.ndarray, str]:
    with Image.open(path) as im:
        im.load()
        size = im.size
        if max(size) > _MAX_SIDE:
            scale = _MAX_SIDE / max(size)
            im = im.resize((round(size[0] * scale), round(size[1] * scale)), Image.Resampling.LANCZOS)
        note = f"downsized from {size[0]}x{size[1]}, " if im.size != size else ""
        if grey:
            arr = np.asarray(im.convert("RGB").convert("L"))
            kind = "greyscale conversion (ITU-R 601 luma) of the colour original"
        else:
            if im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.mode else "RGB")
            arr = np.asarray(im)
            if arr.ndim == 3 and all(np.array_equal(arr[..., 0], arr[..., c]) for c in (1, 2)):
                arr, kind = arr[..., 0], f"grey content (stored as {im.mode} in the source), saved greyscale"
            elif arr.ndim == 3:
                kind = "colour (RGBA)" if arr.shape[-1] == 4 else "colour (RGB)"
            else:
                kind = "greyscale"
    return np.ascontiguousarray(arr), f"{what}; {arr.shape[1]}x{arr.shape[0]} {note}{kind}, 8-bit PNG"


def _natural_items(seed: int) -> Iterator[_Item]:
    for package, name, label, what, grey in _NATURAL:
        path = _natural_file(package, name)
        if path is None:
            logger.warning("OOD set: %s %s is not installed; skipping it.", package, name)
            continue
        source = f"skimage.data.{label}" if package == "skimage" else f"matplotlib sample_data {label}"
        if grey:
            source += ", converted to grey"
        yield _Item(source, lambda p=path, w=what, g=grey: _natural_image(p, w, g))


# ---------------------------------------------------------------------------------------------------------------
# phantom_no_hand
# ---------------------------------------------------------------------------------------------------------------


def _phantom_geometry() -> tuple[tuple[int, int], float, tuple[float, float]]:
    from monai_osteo.data.phantoms.cohort import FIELD_MM

    spacing = FIELD_MM[0] / _PHANTOM_HEIGHT
    shape = (_PHANTOM_HEIGHT, int(round(FIELD_MM[1] / spacing)))
    return shape, spacing, (shape[0] * spacing, shape[1] * spacing)


def _pt(p) -> tuple[float, float]:
    return float(p[0]), float(p[1])


def _unit(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([np.cos(a), np.sin(a)])


def _tube(name: str, center, angle_deg: float, length: float, radius: float, **kw):
    from monai_osteo.data.phantoms.anatomy import Tube

    c, u = np.asarray(center, dtype=np.float64), _unit(angle_deg)
    return Tube(name, _pt(c - 0.5 * length * u), _pt(c + 0.5 * length * u), float(radius), **kw)


def _random_place(rng, field) -> np.ndarray:
    h, w = field
    return np.array([rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.08 * h, 0.92 * h)])


def _scatter(bones: list, rng, field) -> list:
    """The same bones at random positions and angles."""
    from monai_osteo.data.phantoms.anatomy import Tube

    out = []
    for b in bones:
        c = _random_place(rng, field)
        if isinstance(b, Tube):
            length = float(np.hypot(b.p1[0] - b.p0[0], b.p1[1] - b.p0[1]))
            u = _unit(rng.uniform(0.0, 360.0))
            out.append(replace(b, p0=_pt(c - 0.5 * length * u), p1=_pt(c + 0.5 * length * u)))
        else:
            out.append(replace(b, center=_pt(c), angle=float(rng.uniform(0.0, 180.0))))
    return out


def _swap_long_bones(bones: list, rng) -> list:
    """Every tube (radius, ulna, metacarpals, phalanges) moved to the place and direction of another one."""
    from monai_osteo.data.phantoms.anatomy import Tube

    idx = [i for i, b in enumerate(bones) if isinstance(b, Tube)]
    mids = [0.5 * (np.asarray(bones[i].p0) + np.asarray(bones[i].p1)) for i in idx]
    dirs = [(np.asarray(bones[i].p1) - np.asarray(bones[i].p0)) for i in idx]
    perm = np.roll(rng.permutation(len(idx)), 1)  # a permutation composed with a shift: rarely a fixed point
    out = list(bones)
    for k, i in enumerate(idx):
        j = perm[k]
        b = bones[i]
        length = float(np.hypot(b.p1[0] - b.p0[0], b.p1[1] - b.p0[1]))
        u = dirs[j] / max(float(np.linalg.norm(dirs[j])), 1e-9)
        out[i] = replace(b, p0=_pt(mids[j] - 0.5 * length * u), p1=_pt(mids[j] + 0.5 * length * u))
    return out


def _reflect_fan(bones: list) -> list:
    """Metacarpals and phalanges point-reflected through the carpus: the fingers point down the forearm."""
    from monai_osteo.data.phantoms.anatomy import Ellipsoid

    c = np.mean([b.center for b in bones if isinstance(b, Ellipsoid)], axis=0)
    out = []
    for b in bones:
        if b.name[0] in "MP" and not isinstance(b, Ellipsoid):
            b = replace(b, p0=_pt(2 * c - np.asarray(b.p0)), p1=_pt(2 * c - np.asarray(b.p1)))
        out.append(b)
    return out


def _palm_center(hand) -> np.ndarray:
    palm = next(s for s in hand.soft if s.name == "palm")
    return 0.5 * (np.asarray(palm.p0) + np.asarray(palm.p1))


def _femur(rng, field, distal_y: float, name: str = "femur"):
    from monai_osteo.data.phantoms.anatomy import Tube

    h, w = field
    x = 0.5 * w + rng.uniform(-15.0, 15.0)
    tilt = rng.uniform(-6.0, 6.0)
    top = np.array([x - np.tan(np.deg2rad(tilt)) * (distal_y + 0.4 * h), -0.4 * h])
    return Tube(name, _pt(top), (float(x), float(distal_y)), float(rng.uniform(11.0, 14.0)), 0.5,
                float(rng.uniform(0.9, 1.2)), float(rng.uniform(0.4, 0.55)), 0.3, 1.0)


def _knee(rng, field) -> tuple[list, list]:
    from monai_osteo.data.phantoms.anatomy import Ellipsoid, Tube

    h, w = field
    knee_y = h * rng.uniform(0.45, 0.6)
    femur = _femur(rng, field, knee_y)
    x = femur.p1[0]
    tibia = Tube("tibia", (float(x), float(knee_y + 8.0)), (float(x + rng.uniform(-8, 8)), float(1.5 * h)),
                 float(rng.uniform(10.0, 12.0)), 1.0, 0.3, 0.45, 0.3, 1.0)
    fibula = Tube("fibula", (float(x + 30.0), float(knee_y + 25.0)), (float(x + 32.0), float(1.5 * h)), 5.0,
                  0.4, 0.3, 0.5, 0.3, 1.0)
    patella = Ellipsoid("patella", (float(x - 3.0), float(knee_y - 12.0)), 22.0, 18.0, 10.0, 0.0, 0.15, 0.35)
    thigh = Tube("thigh", (0.5 * w, -0.3 * h), (0.5 * w, 1.3 * h), 90.0, 0.0, 0.0, depth=70.0)
    return [femur, tibia, fibula, patella], [thigh]


def _rib_arcs(rng, center_x: float, y0: float, n: int, spacing: float, half_width: float, sides=(-1, 1)) -> list:
    """Rib-like arcs from the midline out and down (each rib 5 straight tubes), ``n`` per side."""
    from monai_osteo.data.phantoms.anatomy import Tube

    ribs = []
    for side in sides:
        for k in range(n):
            cy = y0 + k * spacing + 35.0
            ax, ay = half_width * rng.uniform(0.85, 1.0), rng.uniform(40.0, 55.0)
            phis = np.deg2rad(np.linspace(85.0, -30.0, 6))
            pts = [np.array([center_x + side * ax * np.cos(p), cy - ay * np.sin(p)]) for p in phis]
            r = float(rng.uniform(3.5, 5.0))
            ribs += [Tube(f"rib{side:+d}{k}_{j}", _pt(pts[j]), _pt(pts[j + 1]), r, 0.0, 0.0, 0.35, 0.3, 1.0)
                     for j in range(len(pts) - 1)]
    return ribs


def _chest(rng, field) -> tuple[list, list]:
    from monai_osteo.data.phantoms.anatomy import Ellipsoid, Tube

    h, w = field
    cx = 0.5 * w + rng.uniform(-8.0, 8.0)
    ribs = _rib_arcs(rng, cx, -30.0, 10, 27.0, 0.42 * w)
    spine = [Ellipsoid(f"vertebra{k}", (float(cx), float(12.0 + 27.0 * k)), 15.0, 10.0, 12.0, 0.0, 0.2, 0.3)
             for k in range(11)]
    thorax = Tube("thorax", (0.5 * w, -0.3 * h), (0.5 * w, 1.3 * h), 0.75 * w, 0.0, 0.0, depth=45.0)
    return ribs + spine, [thorax]


def _head(rng, field) -> tuple[list, list]:
    from monai_osteo.data.phantoms.anatomy import Ellipsoid, Tube

    h, w = field
    c = np.array([0.5 * w + rng.uniform(-6, 6), 0.45 * h + rng.uniform(-10, 10)])
    a, b = rng.uniform(72.0, 85.0), rng.uniform(92.0, 105.0)
    skull = Ellipsoid("skull", _pt(c), float(a), float(b), 75.0, float(rng.uniform(-8, 8)), 0.07, 1e-3)
    mandible = Tube("mandible", _pt(c + [-0.5 * a, 0.85 * b]), _pt(c + [0.5 * a, 0.85 * b]), 7.0, 0.6, 0.6, 0.5)
    neck = Tube("vertebra_c", _pt(c + [0.0, b + 15.0]), _pt(c + [0.0, b + 90.0]), 9.0, 0.2, 0.2, 0.3)
    scalp = Tube("head", _pt(c - [0.0, 0.3 * b]), _pt(c + [0.0, 0.3 * b]), float(a + 6.0), 0.0, 0.0, depth=80.0)
    neck_soft = Tube("neck", _pt(c + [0.0, b]), _pt(c + [0.0, 2.0 * b]), 45.0, 0.0, 0.0, depth=45.0)
    return [skull, mandible, neck], [scalp, neck_soft]


def _random_tubes(rng, field, n: int) -> list:
    return [_tube(f"tube{k}", _random_place(rng, field), rng.uniform(0.0, 360.0), rng.uniform(15.0, 120.0),
                  rng.uniform(2.0, 8.0), flare0=float(rng.uniform(0.0, 0.8)), flare1=float(rng.uniform(0.0, 0.8)),
                  cortical_index=float(rng.uniform(0.2, 0.6)), trabecular=float(rng.uniform(0.15, 0.4)))
            for k in range(n)]


def _random_ellipsoids(rng, field, n: int) -> list:
    from monai_osteo.data.phantoms.anatomy import Ellipsoid

    out = []
    for k in range(n):
        a, b = rng.uniform(4.0, 20.0, size=2)
        out.append(Ellipsoid(f"blob{k}", _pt(_random_place(rng, field)), float(a), float(b), float(0.8 * max(a, b)),
                             float(rng.uniform(0.0, 180.0))))
    return out


def _variant(kind: str, hand, rng, field):
    """The placed phantom ``hand`` with its anatomy changed as ``kind`` says."""
    bones = hand.bones
    if kind == "soft":
        bones = []
    elif kind == "femur_in_hand":
        bones = [_femur(rng, field, _palm_center(hand)[1] + rng.uniform(-10.0, 30.0))]
    elif kind == "knee":
        bones, soft = _knee(rng, field)
        return replace(hand, bones=bones, soft=soft)
    elif kind == "ribs_in_hand":
        c = _palm_center(hand)
        bones = _rib_arcs(rng, float(c[0]), float(c[1] - 90.0), 5, 26.0, 45.0, sides=(1 if rng.random() < 0.5 else -1,))
    elif kind == "chest":
        bones, soft = _chest(rng, field)
        return replace(hand, bones=bones, soft=soft)
    elif kind == "skull_in_hand":
        from monai_osteo.data.phantoms.anatomy import Ellipsoid

        bones = [Ellipsoid("skull", _pt(_palm_center(hand)), float(rng.uniform(32, 40)), float(rng.uniform(42, 52)),
                           30.0, float(rng.uniform(-20, 20)), 0.1, 1e-3)]
    elif kind == "head":
        bones, soft = _head(rng, field)
        return replace(hand, bones=bones, soft=soft)
    elif kind == "random_tubes":
        bones = _random_tubes(rng, field, int(rng.integers(5, 11)))
    elif kind == "random_tubes_blobs":
        bones = _random_tubes(rng, field, int(rng.integers(3, 7))) + _random_ellipsoids(rng, field, 5)
    elif kind == "scatter_targets":
        bones = _scatter([b for b in bones if getattr(b, "label", 0)], rng, field)
    elif kind == "scatter_all":
        bones = _scatter(bones, rng, field)
    elif kind == "swap":
        bones = _swap_long_bones(bones, rng)
    elif kind == "reflect_fan":
        bones = _reflect_fan(bones)
    else:
        raise ValueError(f"unknown phantom variant {kind!r}")
    return replace(hand, bones=bones)


#: (variant, source, description), in output order
_PHANTOMS = [
    ("soft", "phantom: soft tissue only", "phantom hand soft tissue with every bone removed"),
    ("scatter_targets", "phantom: target bones scattered",
     "the seven target bones (ulna, radius, M1-M5) alone at random positions and angles in hand soft tissue"),
    ("femur_in_hand", "phantom: femur-like tube", "one long femur-like tube instead of the hand's bones"),
    ("knee", "phantom: knee", "femur, tibia, fibula and patella in a thigh-sized soft-tissue cylinder"),
    ("ribs_in_hand", "phantom: rib-like arcs", "rib-like arcs instead of the hand's bones"),
    ("chest", "phantom: chest section", "rib arcs on both sides of a vertebral column in a thorax-sized soft tissue"),
    ("skull_in_hand", "phantom: skull-like shell", "a skull-like ellipsoid shell instead of the hand's bones"),
    ("head", "phantom: skull", "skull-like ellipsoid shell, mandible and cervical spine in a head and neck"),
    ("random_tubes", "phantom: random tubes", "5-10 random bone tubes at random positions and angles"),
    ("scatter_all", "phantom: bones scattered",
     "every hand bone (carpals, metacarpals, phalanges, radius, ulna) at random positions and angles"),
    ("swap", "phantom: long bones swapped",
     "all carpals in place, every long bone moved to the place and direction of another one"),
    ("reflect_fan", "phantom: metacarpal fan reflected",
     "metacarpals and phalanges point-reflected through the carpus (fingers pointing down the forearm)"),
    ("random_tubes_blobs", "phantom: random tubes and ellipsoids",
     "3-6 random bone tubes and 5 bone ellipsoids at random positions and angles"),
    ("random_tubes", "phantom: random tubes", "5-10 random bone tubes at random positions and angles"),
    ("scatter_targets", "phantom: target bones scattered",
     "the seven target bones (ulna, radius, M1-M5) alone at random positions and angles in hand soft tissue"),
    ("scatter_all", "phantom: bones scattered",
     "every hand bone (carpals, metacarpals, phalanges, radius, ulna) at random positions and angles"),
    ("soft", "phantom: soft tissue only", "phantom hand soft tissue with every bone removed"),
    ("soft", "phantom: soft tissue only", "phantom hand soft tissue with every bone removed"),
]


def _phantom_image(kind: str, description: str, seed: int, index: int) -> tuple[np.ndarray, str]:
    from monai_osteo.data.phantoms.anatomy import place_hand
    from monai_osteo.data.phantoms.render import render_hand
    from monai_osteo.data.phantoms.subjects import sample_subject

    shape, spacing, field = _phantom_geometry()
    rng = np.random.default_rng([seed, _STREAMS["phantom_no_hand"], index])
    hand = place_hand(sample_subject(rng), rng, field, ring_p=0.0, missing_p=0.0)
    rendered = render_hand(_variant(kind, hand, rng, field), shape, spacing, rng, annotators=1)
    return rendered.image, (f"{description}; phantom rendering (attenuation, blur, quantum noise, collimation, "
                            f"marker, windowing), {shape[0]}x{shape[1]} 16-bit PNG, seeded")


def _phantom_items(seed: int) -> Iterator[_Item]:
    for index, (kind, source, description) in enumerate(_PHANTOMS):
        yield _Item(source, lambda k=kind, d=description, i=index: _phantom_image(k, d, seed, i))


# ---------------------------------------------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------------------------------------------


def _to_uint(x: np.ndarray, bits: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-12)
    top = 255 if bits == 8 else 65535
    return np.round(x * top).astype(np.uint8 if bits == 8 else np.uint16)


def _smooth(rng, shape, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")


def _inverted_phantom(seed: int, index: int) -> np.ndarray:
    from monai_osteo.data.phantoms.cohort import render_subject
    from monai_osteo.data.phantoms.subjects import sample_subject

    stream = _STREAMS["synthetic"]
    subject = sample_subject(np.random.default_rng([seed, stream, index, 1]))
    rendered, _ = render_subject(subject, seed, stream, index, _PHANTOM_HEIGHT, annotators=1)
    return (65535 - rendered.image).astype(np.uint16)


def _text_blocks(rng) -> np.ndarray:
    page = np.full((768, 544), 235, dtype=np.uint8)
    y = 40
    while y < 768 - 40:
        x = 36
        while True:
            word = int(rng.integers(12, 70))
            if x + word > 544 - 36:
                break
            page[y:y + 11, x:x + word] = rng.integers(10, 60)
            x += word + int(rng.integers(7, 12))
        y += int(rng.choice([22, 22, 22, 44]))
    return page


def _blobs(rng) -> np.ndarray:
    from scipy import ndimage

    field = np.zeros((512, 512))
    pts = rng.integers(0, 512, size=(2, 120))
    field[pts[0], pts[1]] = 1.0
    field = ndimage.gaussian_filter(field, 16.0, mode="wrap")
    return np.where(field > np.median(field), 255, 0).astype(np.uint8)


def _synthetic_specs(seed: int) -> list[tuple[str, str, Callable[[np.random.Generator], np.ndarray], str]]:
    """(source, description, make(rng), expect), in output order."""
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float64)
    return [
        ("phantom: hand, intensities inverted (seeded)",
         "phantom hand radiograph with inverted intensities (bone dark, background bright); 512x359 16-bit PNG",
         lambda rng: _inverted_phantom(seed, 0), "screen"),
        ("numpy: constant grey", "constant image (every pixel 128); 256x256 8-bit PNG; LoadRadiograph refuses it",
         lambda rng: np.full((256, 256), 128, dtype=np.uint8), "read_error"),
        ("numpy: uniform noise (seeded)", "uniform white noise; 512x512 8-bit PNG",
         lambda rng: rng.integers(0, 256, size=(512, 512), dtype=np.uint8), "screen"),
        ("numpy: Gaussian noise (seeded)", "Gaussian white noise around mid-grey; 512x512 16-bit PNG",
         lambda rng: np.clip(rng.normal(32768.0, 9000.0, size=(512, 512)), 0, 65535).astype(np.uint16), "screen"),
        ("numpy/scipy: smooth noise (seeded)", "low-pass (Gaussian sigma 12 px) noise; 512x512 16-bit PNG",
         lambda rng: _to_uint(_smooth(rng, (512, 512), 12.0), 16), "screen"),
        ("numpy: checkerboard", "checkerboard of 32-pixel squares; 512x512 8-bit PNG",
         lambda rng: (((yy // 32 + xx // 32) % 2) * 255).astype(np.uint8), "screen"),
        ("numpy: horizontal ramp", "linear left-to-right intensity ramp; 384x512 8-bit PNG",
         lambda rng: _to_uint(np.tile(np.arange(512.0), (384, 1)), 8), "screen"),
        ("numpy: radial gradient", "radial gradient, bright centre; 512x512 16-bit PNG",
         lambda rng: _to_uint(-np.hypot(yy - 255.5, xx - 255.5), 16), "screen"),
        ("numpy: text-like blocks (seeded)", "white page with lines of dark word-like blocks; 768x544 8-bit PNG",
         _text_blocks, "screen"),
        ("numpy: sine grating", "oblique sine grating, period about 23 px; 512x512 8-bit PNG",
         lambda rng: _to_uint(np.sin((xx * np.cos(0.5) + yy * np.sin(0.5)) * 2 * np.pi / 23.0), 8), "screen"),
        ("numpy/scipy: binary blobs (seeded)", "black and white random blobs; 512x512 8-bit PNG", _blobs, "screen"),
        ("numpy: tiny random image (seeded)", "16x16 uniform noise; 8-bit PNG",
         lambda rng: rng.integers(0, 256, size=(16, 16), dtype=np.uint8), "screen"),
        ("numpy/scipy: elongated strip (seeded)", "32x1024 strip of smooth noise (aspect ratio 1:32); 8-bit PNG",
         lambda rng: _to_uint(_smooth(rng, (32, 1024), 4.0), 8), "screen"),
        ("phantom: hand, intensities inverted (seeded)",
         "phantom hand radiograph with inverted intensities (bone dark, background bright); 512x359 16-bit PNG",
         lambda rng: _inverted_phantom(seed, 13), "screen"),
        ("numpy: constant black", "constant image (every pixel 0); 256x256 16-bit PNG; LoadRadiograph refuses it",
         lambda rng: np.zeros((256, 256), dtype=np.uint16), "read_error"),
    ]


def _synthetic_items(seed: int) -> Iterator[_Item]:
    for index, (source, description, make, expect) in enumerate(_synthetic_specs(seed)):
        def run(m=make, d=description, i=index):
            return m(np.random.default_rng([seed, _STREAMS["synthetic"], i])), d

        yield _Item(source, run, expect)


_GENERATORS: dict[str, Callable[[int], Iterator[_Item]]] = {
    "dicom_other": _dicom_items,
    "natural": _natural_items,
    "phantom_no_hand": _phantom_items,
    "synthetic": _synthetic_items,
}


# ---------------------------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------------------------


def _save_png(array: np.ndarray, path: Path) -> None:
    """8-bit L/RGB/RGBA or 16-bit grey PNG, written atomically (PIL writes no timestamp: same pixels, same bytes)."""
    if array.dtype not in (np.uint8, np.uint16) or (array.dtype == np.uint16 and array.ndim != 2):
        raise TypeError(f"cannot save {array.dtype} array of shape {array.shape} as PNG")
    image = Image.fromarray(np.ascontiguousarray(array))
    atomic_write(path, lambda f: image.save(f, format="PNG"))


def build_ood_set(out_dir: str | os.PathLike, seed: int = 0, categories: Sequence[str] | None = None,
                  per_category: int | None = None) -> list[dict]:
    """Write the OOD evaluation images and their manifest ``out_dir/ood_set.json``; return the records.

    Args:
        out_dir: output folder (created); images are written as ``<category>_<nn>.png`` / ``.dcm`` directly in it
            and replace files of the same name; other files in it are left alone (use a fresh folder per set).
        seed: seed of the phantom and seeded synthetic images (>= 0); the same seed gives byte-identical files.
        categories: subset of :data:`CATEGORIES` to write (manifest order stays that of :data:`CATEGORIES`);
            None writes all.
        per_category: keep only the first N images of each category (the same files as in the full set), e.g.
            for a quick CI subset; None keeps all.

    Returns:
        one record per image, as in the manifest: ``{"image": absolute path, "category", "source",
        "description", "expect": "screen" | "read_error"}``.

    Raises:
        ValueError: for an unknown category, a negative seed or ``per_category < 1``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")
    if categories is None:
        wanted = CATEGORIES
    else:
        wanted = (categories,) if isinstance(categories, str) else tuple(categories)
    unknown = sorted(set(wanted) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown categories {unknown}; choose from {list(CATEGORIES)}.")
    if per_category is not None and (isinstance(per_category, bool) or int(per_category) != per_category
                                     or per_category < 1):
        raise ValueError(f"per_category must be an integer >= 1 or None, got {per_category!r}.")
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    for category in (c for c in CATEGORIES if c in wanted):
        items = _GENERATORS[category](int(seed))
        if per_category is not None:
            items = itertools.islice(items, int(per_category))
        for number, item in enumerate(items, start=1):
            payload, description = item.make()
            if isinstance(payload, Path):
                path = out / f"{category}_{number:02d}{payload.suffix.lower()}"
                atomic_copy(payload, path)
            else:
                path = out / f"{category}_{number:02d}.png"
                _save_png(payload, path)
            records.append({"image": str(path), "category": category, "source": item.source,
                            "description": description, "expect": item.expect})
    atomic_write_json(out / MANIFEST_NAME, {"seed": int(seed), "records": records})
    logger.info("OOD set: wrote %d images to %s", len(records), out)
    return records


def _table(records: list[dict]) -> str:
    rows = [("category", "images", "screen", "read_error")]
    for category in CATEGORIES:
        recs = [r for r in records if r["category"] == category]
        if recs:
            rows.append((category, str(len(recs)), str(sum(r["expect"] == "screen" for r in recs)),
                         str(sum(r["expect"] == "read_error" for r in recs))))
    rows.append(("total", str(len(records)), str(sum(r["expect"] == "screen" for r in records)),
                 str(sum(r["expect"] == "read_error" for r in records))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(f"{r[0]:<{widths[0]}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(r[1:], widths[1:]))
                     for r in rows)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m monai_osteo.data.ood_set --out DIR [--seed S] [--per-category N]``."""
    parser = argparse.ArgumentParser(prog="python -m monai_osteo.data.ood_set",
                                     description="Write the out-of-distribution evaluation set of the hand "
                                                 "screening gates (non-hand images) and its manifest ood_set.json.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantom and seeded synthetic images")
    parser.add_argument("--per-category", type=int, default=None, help="keep the first N images of each category")
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES, default=None, help="default: all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    try:
        records = build_ood_set(args.out, seed=args.seed, categories=args.categories, per_category=args.per_category)
    except ValueError as e:
        logger.error("%s", e)
        return 1
    print(_table(records))
    print(f"manifest: {Path(args.out).expanduser().resolve() / MANIFEST_NAME} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
