"""The inputs of an image-segmentation inference run: which files it reads, which of them can be read, and the
model file it loads (MedSASS ``inference.json``).

A batch job reads every file once before the dataset is built, reports the ones it cannot read (empty, corrupt, an
unsupported layout) and segments the rest, as :func:`~monai_osteo.bundle.check_radiographs` does for radiographs.
Outputs are named by :func:`~monai_osteo.bundle.output_id` (neither the patient nor the file appears) unless the
user asks to keep the input names.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

from monai_osteo.bundle.paths import expand_inputs, output_id

__all__ = ["IMAGE_SUFFIXES", "check_images", "list_images", "require_file", "require_inputs"]

logger = logging.getLogger("monai_osteo.medsass")

#: suffixes of the 2-D image files a folder is searched for (case-insensitive); PIL reads them all
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(
    inputs: str | os.PathLike | Sequence, suffixes: Sequence[str] = IMAGE_SUFFIXES, missing_ok: bool = False
) -> list[str]:
    """Image files of a folder (recursive, sorted, hidden files skipped, ``suffixes`` only), a file, or a list.

    A path that does not exist raises ``FileNotFoundError`` naming it (``missing_ok``: gives an empty list, so that
    an inference config can be built and property-checked before any input exists). A file or list is returned
    as given, whatever its suffix: :func:`check_images` reports what cannot be read.
    """
    wanted = {s.lower() for s in suffixes}
    hint = (f"pass --input_dir DIR (a folder of {'/'.join(s.lstrip('.').upper() for s in suffixes)} images) or "
            "--input_files \"['a.png', 'b.png']\".")
    return expand_inputs(inputs, lambda p: p.suffix.lower() in wanted, missing_ok, hint, "image")


def check_images(
    files: Sequence[str | os.PathLike],
    transform: Callable | None = None,
    keep_names: bool = False,
    key: str = "image",
    decode: bool = True,
) -> dict:
    """Read every file once; split them into the readable inputs and the failures (a batch job skips and reports).

    A file fails when it is empty, when PIL cannot decode it (``decode``: corrupt, truncated, not an image) or when
    ``transform`` raises on it.

    Args:
        files: the input files, in order (their position is the output index).
        transform: a dictionary transform applied to ``{key: path}`` after decoding, typically the loading
            transforms of the inference preprocessing, so that a file that passes is one the dataset can load
            (an unsupported channel layout fails here). ``None``: decoding only.
        keep_names: name the outputs after the input file stems (made unique) and keep paths in the messages;
            otherwise names are :func:`~monai_osteo.bundle.output_id` and the input's path, name and stem are
            replaced by ``<input>`` in the failure messages and the log.
        key: the dictionary key of the image.
        decode: decode each file with PIL first (MONAI's ``LoadImage`` would try every other reader on a file PIL
            cannot read, logging the path at each try, and report only that no reader fits).

    Returns:
        ``{"items": [{key, "source", "index", "name"}], "failed": [{"id", "error"} (+ "input" with keep_names)]}``;
        ``name``/``id`` is the output name of the file.
    """
    files = [str(f) for f in files]
    names = _output_names(files, keep_names)
    items, failed = [], []
    for i, (f, name) in enumerate(zip(files, names)):
        reason = _check_one(f, transform, key, decode, redact=not keep_names)
        if reason is None:
            items.append({key: f, "source": f, "index": i, "name": name})
        elif keep_names:
            failed.append({"id": name, "input": f, "error": reason})
            logger.error("%s (%s): skipped: %s", name, f, reason)
        else:
            failed.append({"id": name, "error": reason})
            logger.error("%s: skipped: %s", name, reason)
    return {"items": items, "failed": failed}


def _check_one(path: str, transform: Callable | None, key: str, decode: bool, redact: bool) -> str | None:
    """``None`` if ``path`` loads, else why not (one line; a library's message redacted with ``redact``)."""
    if not os.path.isfile(path):
        return "no such file: check the path or the list given as input_files."
    if os.path.getsize(path) == 0:
        return "empty file (0 bytes): re-export or re-copy the image."
    try:
        if decode:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
        if transform is not None:
            transform({key: path})
    except Exception as e:  # noqa: BLE001 - report the bad file, segment the rest
        while e.__cause__ is not None:  # MONAI wraps a transform's error in "applying transform ..."
            e = e.__cause__
        if isinstance(e, struct.error) or "truncated" in str(e).lower():  # PIL's messages for a cut-off file
            return "truncated or corrupt image: re-export or re-copy it."
        first = (str(e).strip().splitlines() or [""])[0][:500]
        return f"{type(e).__name__}: {_redact(first, path) if redact else first}"
    return None


def require_file(path: str | os.PathLike | None, name: str, fix: str = "") -> str:
    """``path`` if it is a file, else ``FileNotFoundError`` naming the id ``name``, the path and ``fix``."""
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(f"{name} {str(path)!r} does not exist{': ' + fix if fix else '.'}")
    return str(path)


def require_inputs(files: Sequence, input_dir: str | os.PathLike | None = None) -> list:
    """``files`` unless it is empty, else ``FileNotFoundError`` saying where nothing was found and what to pass."""
    if len(files) == 0:
        where = (
            f"input_dir {str(input_dir)!r} does not exist"
            if input_dir is not None and not os.path.isdir(input_dir)
            else f"no image files in input_dir {str(input_dir)!r}"
        )
        raise FileNotFoundError(
            f"no input images: {where}; pass --input_dir DIR (a folder of "
            f"{'/'.join(s.lstrip('.').upper() for s in IMAGE_SUFFIXES)} images) or "
            "--input_files \"['a.png', 'b.png']\"."
        )
    return list(files)


def _output_names(files: list[str], keep_names: bool) -> list[str]:
    if not keep_names:
        return [output_id(f, i) for i, f in enumerate(files)]
    stems = [Path(f).stem or f"input{i:05d}" for i, f in enumerate(files)]
    repeated = {s for s in stems if stems.count(s) > 1}
    return [f"{s}_{i:05d}" if s in repeated else s for i, s in enumerate(stems)]


def _redact(message: str, source: str) -> str:
    """``message`` with the input's path and file name replaced by ``<input>``, and its stem where it stands alone
    (not inside a longer word: a stem such as "a" must not mangle the message)."""
    for s in sorted({source, os.path.basename(source)}, key=len, reverse=True):
        message = message.replace(s, "<input>")
    stem = Path(source).stem
    if stem:
        message = re.sub(rf"(?<![A-Za-z0-9]){re.escape(stem)}(?![A-Za-z0-9])", "<input>", message)
    return message
