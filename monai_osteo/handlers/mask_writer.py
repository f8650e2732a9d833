"""Handler of a binary-segmentation inference run: one mask (+ overlay, + NIfTI) per image and a summary."""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_osteo.io import atomic_write, atomic_write_json

__all__ = ["SegmentationMaskWriter"]

logger = logging.getLogger("monai_osteo.medsass")


class SegmentationMaskWriter:
    """Write ``<name>_mask.png`` (0/255), ``<name>_overlay.png`` and optionally ``<name>_mask.nii.gz`` per image on
    ``ITERATION_COMPLETED`` of an evaluator, and ``summary.json`` on ``COMPLETED``.

    MONAI's ``SaveImage(d)`` writes to the final name directly and has no overlay; every file here is written to a
    temporary name beside it and renamed (:func:`~monai_osteo.io.atomic_write`), so an interrupted run leaves whole
    files only. Names come from the batch (``name_key``: :func:`~monai_osteo.bundle.images.check_images` gives
    :func:`~monai_osteo.bundle.output_id` ids unless the user keeps the input names); the input path is written to
    the summary only with ``keep_names``. Inputs that could not be read (``failed``) are listed in the summary.

    The prediction of each item (``pred_key``) is a (1, H, W) or (H, W) map at the input's size, foreground where
    > 0.5 (a thresholded sigmoid). The overlay is the input image re-read from ``source_key`` (PIL, any bit depth
    scaled to 8 bits) with the foreground tinted and its contour drawn in ``color``.

    Args:
        output_dir: where to write.
        failed: the unreadable inputs (``check_images(...)["failed"]``), reported in ``summary.json``.
        keep_names: record each input path in the summary (the names themselves come from ``name_key``).
        write_overlay: also write the overlay PNG.
        write_nifti: also write the mask as NIfTI (uint8 0/1, axes (x = column, y = row), identity affine).
        color: RGB of the tint and the contour.
        alpha: opacity of the tint, in [0, 1].
        pred_key, name_key, source_key: output/batch keys.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        failed: Sequence[dict] = (),
        keep_names: bool = False,
        write_overlay: bool = True,
        write_nifti: bool = False,
        color: Sequence[int] = (255, 0, 0),
        alpha: float = 0.35,
        pred_key: str = "pred",
        name_key: str = "name",
        source_key: str = "source",
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}.")
        if len(color) != 3:
            raise ValueError(f"color must be an RGB triple, got {color!r}.")
        self.output_dir, self.failed = Path(output_dir), list(failed)
        self.keep_names, self.write_overlay, self.write_nifti = keep_names, write_overlay, write_nifti
        self.color, self.alpha = np.asarray(color, dtype=np.float32), float(alpha)
        self.pred_key, self.name_key, self.source_key = pred_key, name_key, source_key
        self.records: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write_summary)

    def _start(self, engine: Engine | None = None) -> None:
        self.records = []
        self.output_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, engine: Engine) -> None:
        from monai.data import decollate_batch

        batch, output = engine.state.batch, engine.state.output
        batch = decollate_batch(batch) if isinstance(batch, dict) else batch
        output = decollate_batch(output) if isinstance(output, dict) else output
        for item, out in zip(batch, output):
            self.write(str(item[self.name_key]), out[self.pred_key], item.get(self.source_key))

    def write(self, name: str, pred: torch.Tensor | np.ndarray, source: str | os.PathLike | None = None) -> dict:
        """Write the files of one image; returns (and records for the summary) its entry."""
        mask = _binary_mask(pred)
        entry: dict = {"id": name, "size": list(mask.shape), "foreground_fraction": round(float(mask.mean()), 6)}
        if self.keep_names and source is not None:
            entry["input"] = str(source)
        png = (mask * np.uint8(255)).astype(np.uint8)
        entry["mask"] = self._png(f"{name}_mask.png", png)
        if self.write_nifti:
            entry["mask_nifti"] = self._nifti(f"{name}_mask.nii.gz", mask)
        if self.write_overlay and source is not None:
            entry["overlay"] = self._png(f"{name}_overlay.png", self.overlay(_display_rgb(source, mask.shape), mask))
        self.records.append(entry)
        logger.debug("%s: foreground %.4f", name, entry["foreground_fraction"])
        return entry

    def overlay(self, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 image with the (H, W) boolean ``mask`` tinted and outlined."""
        from scipy.ndimage import binary_erosion

        out = rgb.astype(np.float32)
        out[mask] = (1.0 - self.alpha) * out[mask] + self.alpha * self.color
        out[mask & ~binary_erosion(mask, border_value=1)] = self.color
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def write_summary(self, engine: Engine | None = None) -> Path:
        """``summary.json``: ``images`` (id, size, foreground fraction, file names relative to ``output_dir``,
        the input path with ``keep_names``) and ``failed`` (id, reason)."""
        summary = {
            "count": len(self.records),
            "failed_count": len(self.failed),
            "images": self.records,
            "failed": self.failed,
        }
        path = atomic_write_json(self.output_dir / "summary.json", summary)
        logger.info(
            "segmented %d image(s), %d unreadable; masks in %s", len(self.records), len(self.failed), self.output_dir
        )
        return path

    def _png(self, filename: str, array: np.ndarray) -> str:
        from PIL import Image

        atomic_write(self.output_dir / filename, lambda f: Image.fromarray(array).save(f, format="PNG"))
        return filename

    def _nifti(self, filename: str, mask: np.ndarray) -> str:
        import nibabel as nib

        img = nib.Nifti1Image(np.ascontiguousarray(mask.T, dtype=np.uint8), affine=np.eye(4))
        atomic_write(self.output_dir / filename, lambda f: f.write(gzip.compress(img.to_bytes(), mtime=0)))
        return filename


def _binary_mask(pred: torch.Tensor | np.ndarray) -> np.ndarray:
    """(1, H, W) or (H, W) prediction -> (H, W) boolean mask (> 0.5)."""
    a = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(
            f"pred must be a (1, H, W) or (H, W) binary map (one sigmoid channel), got shape "
            f"{a.shape}: threshold a 1-channel output in the postprocessing (AsDiscreted)."
        )
    return a > 0.5


def _display_rgb(source: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """The input image as (H, W, 3) uint8 at ``shape`` (gray repeated, alpha dropped, >8-bit scaled by min/max)."""
    from PIL import Image

    with Image.open(source) as im:
        if im.mode in ("P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGBA" if im.mode == "PA" else "RGB")
        a = np.asarray(im)
    if a.ndim == 3:
        a = a[..., :3] if a.shape[-1] >= 3 else a[..., 0]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = np.zeros_like(a, dtype=np.uint8) if hi <= lo else np.rint((a - lo) / (hi - lo) * 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.shape[:2] != tuple(shape):  # a reader other than PIL's layout: show the image at the mask's size
        a = np.asarray(Image.fromarray(a).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    return a
