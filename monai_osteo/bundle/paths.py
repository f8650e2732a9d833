"""Where a bundle lives, and which radiograph files an inference run reads."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from monai_osteo.data import SUPPORTED_SUFFIXES

__all__ = ["check_radiographs", "expand_inputs", "find_bundle_root", "list_radiographs", "output_id",
           "output_name_formatter", "redact"]

logger = logging.getLogger("monai_osteo.bundle")


def find_bundle_root(name: str) -> str:
    """The bundle folder: the current directory if it is the bundle, else ``bundles/<name>`` below it, else the
    ``bundles/<name>`` of the repository this package is installed from (an editable install; MONAI Label's server
    runs from the app's folder)."""
    cwd = Path.cwd()
    if (cwd / "configs" / "metadata.json").is_file() and cwd.name == name:
        return str(cwd)
    for candidate in (cwd / "bundles" / name, Path(__file__).resolve().parents[2] / "bundles" / name):
        if (candidate / "configs").is_dir():
            return str(candidate)
    raise FileNotFoundError(f"bundle {name!r} not found from {cwd}: run from the repository root or the bundle folder, "
                            "or pass --bundle_root PATH.")


def expand_inputs(inputs: str | os.PathLike | Sequence, accept: Callable[[Path], bool], missing_ok: bool = False,
                  missing_hint: str = "pass a folder, a file or a list of files.", kind: str = "input") -> list[str]:
    """Files of a folder (recursive, sorted, hidden files and folders skipped, those ``accept`` takes), a file, or a
    list (returned as given: the reader reports what it cannot read).

    A path that does not exist raises ``FileNotFoundError`` naming it and ``missing_hint`` (``missing_ok``: gives an
    empty list, so that an inference config can be built and property-checked before any input exists).
    """
    if isinstance(inputs, (list, tuple)):
        return [str(p) for p in inputs]
    path = Path(inputs).expanduser()
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        if missing_ok:
            return []
        raise FileNotFoundError(f"{path}: no such file or folder of {kind} files; {missing_hint}")
    files = [str(p) for p in sorted(path.rglob("*"))
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts) and accept(p)]
    if not files:
        logger.warning("%s: no %s files found", path, kind)
    return files


def list_radiographs(inputs: str | os.PathLike | list, missing_ok: bool = False) -> list[str]:
    """Radiograph files of a folder (recursive, supported suffixes, DICOM without suffix included), a file, or a list.

    A path that does not exist raises ``FileNotFoundError`` naming it (``missing_ok``: gives an empty list, so that
    an inference config can be built and property-checked before any input exists).
    """
    suffixes = {s.lower() for group in SUPPORTED_SUFFIXES.values() for s in group}

    def accept(p: Path) -> bool:
        # DICOM exports are often named by UID ("1.2.840...") or "IM0001" without a suffix: check the preamble
        return any(p.name.lower().endswith(s) for s in suffixes) or _is_dicom(p)

    return expand_inputs(inputs, accept, missing_ok, "set dataset_dir (inference) to a folder of "
                         "DICOM/PNG/TIFF/NIfTI/NRRD radiographs, a file, or a list of files.", "radiograph")


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def output_id(source: str | os.PathLike, index: int | None = None) -> str:
    """Output name of an input that names neither the patient nor the file: ``r[<index>_]<sha256(path)[:8]>``."""
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:8]
    return f"r{index:05d}_{digest}" if index is not None else f"r{digest}"


def output_name_formatter(record_source: bool = False):
    """``output_name_formatter`` for MONAI's ``SaveImage(d)``: file names from :func:`output_id` unless
    ``record_source`` (then MONAI's default: the input's file name)."""
    from monai.data.folder_layout import default_name_formatter

    def _formatter(metadict: dict, saver) -> dict:
        if record_source:
            return default_name_formatter(metadict, saver)
        return {"subject": output_id(metadict.get("filename_or_obj", "")), "idx": metadict.get("patch_index")}

    return _formatter


def check_radiographs(files: list[str], record_source: bool = False) -> dict:
    """Read every file once; split them into the readable inputs and the failures (a batch job skips and reports).

    Returns:
        ``{"items": [{"image", "source", "index"}], "failures": [{"id", "error"}]}``; ``index`` is the position in
        ``files`` (the output id of :func:`output_id`). Unless ``record_source``, a failure's message has the
        path and file name replaced by ``<input>`` and no ``source`` entry, and the log names only its id.
    """
    from monai_osteo.data import LoadRadiograph

    loader = LoadRadiograph()
    items, failures = [], []
    for i, f in enumerate(files):
        try:
            loader(f)
        except Exception as e:  # noqa: BLE001 - report the bad file, screen the rest
            rid = output_id(f, i)
            reason = _root_cause(e)
            if record_source:
                failures.append({"id": rid, "source": str(f), "error": reason})
                logger.error("%s (%s): skipped: %s", rid, f, reason)
            else:
                reason = redact(reason, str(f))
                failures.append({"id": rid, "error": reason})
                logger.error("%s: skipped: %s", rid, reason)
            continue
        items.append({"image": str(f), "source": str(f), "index": i})
    return {"items": items, "failures": failures}


def _root_cause(e: BaseException) -> str:
    """The reader's own error (it says what is wrong and how to fix it), else the innermost error of the chain."""
    from monai_osteo.data import RadiographReadError

    chain = [e]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    e = next((x for x in chain if isinstance(x, RadiographReadError)), chain[-1])
    return f"{type(e).__name__}: {e}"


def redact(message: str, source: str) -> str:
    """``message`` with the input's path, file name and stem replaced by ``<input>``."""
    for s in sorted({source, os.path.basename(source), Path(source).stem}, key=len, reverse=True):
        if s:
            message = message.replace(s, "<input>")
    return message
