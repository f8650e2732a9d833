"""Handler of the hand_osteo patch-extraction workflow: cut each radiograph's bone patches and cache them."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_osteo.data.readers.patches import save_bone_patch
from monai_osteo.io import atomic_write_json
from monai_osteo.metrics.quality import segmentation_confidence
from monai_osteo.transforms import ExtractBonePatches

__all__ = ["BonePatchWriter", "PATCH_INDEX"]

logger = logging.getLogger("monai_osteo.hand_osteo")
PATCH_INDEX = "index.json"


class BonePatchWriter:
    """Write the bone patches of every radiograph an evaluator segments, and an index of them at the end.

    Attach it to a ``SupervisedEvaluator`` whose batches hold the full-resolution radiograph (``image_key``) and
    the position of its record in ``records`` (``index_key``), and whose (decollated, post-processed) output holds
    the class probabilities at the network's size cropped to the radiograph's window (``pred_key``; see
    :class:`~monai_osteo.transforms.CropLetterboxd`). ``mode="bones"`` (the method) cuts one patch per bone with
    :class:`~monai_osteo.transforms.ExtractBonePatches` at native scale; ``mode="random"`` (the paper's "no
    segmentation" ablation, Table 4) ignores the prediction and stores ``random_patches`` random squares of the
    radiograph for pretraining and the whole radiograph, zero-padded square, for the probe.

    Output in ``output_dir``: ``patches/<image_id>_<bone>.npy`` and ``index.json`` (written last, atomically):
    ``patches`` (one record per patch: ``patch`` relative path, ``bone``, ``image_id``, ``subject_id``, ``label``
    (-1 unlabelled), ``split``, ``set``, ``role`` ("ssl" and/or "probe")), ``images`` (bones found and segmentation
    confidence per radiograph) and ``mode``.

    Args:
        records: the dataset's records (see :func:`~monai_osteo.bundle.hand_osteo.patch_sources`).
        output_dir: cache folder.
        mode: "bones" or "random".
        margin, min_area: see :class:`~monai_osteo.transforms.ExtractBonePatches`.
        random_patches, random_patch_fraction: count and side (fraction of the shorter side) of the random squares.
        seed: seed of the random squares.
        image_key, pred_key, index_key: batch/output keys.
    """

    def __init__(self, records: Sequence[dict], output_dir: str | os.PathLike, mode: str = "bones",
                 margin: float = 0.05, min_area: float = 5e-4, random_patches: int = 7,
                 random_patch_fraction: float = 0.3, seed: int = 0, image_key: str = "radiograph",
                 pred_key: str = "pred", index_key: str = "record_index") -> None:
        if mode not in ("bones", "random"):
            raise ValueError(f"mode must be 'bones' (segment, 7 bone patches) or 'random' (no segmentation "
                             f"ablation), got {mode!r}.")
        if not 0 < random_patch_fraction <= 1:
            raise ValueError(f"random_patch_fraction must be in (0, 1], got {random_patch_fraction!r}.")
        self.records, self.output_dir, self.mode = list(records), Path(output_dir), mode
        self.extractor = ExtractBonePatches(margin=margin, min_area=min_area)
        self.random_patches, self.random_patch_fraction, self.seed = int(random_patches), random_patch_fraction, seed
        self.image_key, self.pred_key, self.index_key = image_key, pred_key, index_key
        self._reset()

    def _reset(self, engine: Engine | None = None) -> None:
        self.patches: list[dict] = []
        self.images: list[dict] = []
        self.rng = np.random.default_rng(self.seed)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write_index)

    def __call__(self, engine: Engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        items = batch if isinstance(batch, list) else [batch]
        outputs = output if isinstance(output, list) else [output]
        for item, out in zip(items, outputs):
            idx = int(torch.as_tensor(item[self.index_key]).reshape(-1)[0])
            rec = self.records[idx]
            img = torch.as_tensor(item[self.image_key]).float()
            img = img[0] if img.ndim == 4 else img
            base = {k: rec[k] for k in ("image_id", "subject_id", "label", "split", "set")}
            if self.mode == "bones":
                prob = torch.as_tensor(out[self.pred_key]).float()
                found, conf = self._bones(img, prob[0] if prob.ndim == 4 else prob, base, rec["roles"])
                self.images.append({**base, "bones_found": found, "confidence": conf})
            else:
                self._random(img.cpu(), base, rec["roles"])
                self.images.append({**base, "bones_found": [], "confidence": None})

    def _save(self, rel: str, patch, base: dict, bone: str, roles, **extra) -> None:
        save_bone_patch(self.output_dir / rel, patch)
        self.patches.append({**base, "patch": rel, "bone": bone, "role": list(roles), **extra})

    def _bones(self, img: torch.Tensor, prob: torch.Tensor, base: dict, roles) -> tuple[list[str], float]:
        bones, not_found = self.extractor.find_bones(prob, tuple(img.shape[1:]))
        patches, _ = self.extractor.make_patches(img, bones, not_found, masks=False)
        for bone, p in zip(bones, patches):
            self._save(f"patches/{base['image_id']}_{bone.name}.npy", p, base, bone.name, roles, area=int(bone.area))
        return [b.name for b in bones], segmentation_confidence(prob, prob.argmax(0))

    def _random(self, img: torch.Tensor, base: dict, roles) -> None:
        h, w = img.shape[1:]
        if "ssl" in roles:
            side = max(8, int(round(self.random_patch_fraction * min(h, w))))
            for j in range(self.random_patches):
                r, c = int(self.rng.integers(0, h - side + 1)), int(self.rng.integers(0, w - side + 1))
                self._save(f"patches/{base['image_id']}_random{j}.npy", img[:, r:r + side, c:c + side], base,
                           f"random{j}", ["ssl"])
        if "probe" in roles:
            side = max(h, w)
            square = torch.zeros((1, side, side), dtype=img.dtype)
            square[:, (side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = img
            self._save(f"patches/{base['image_id']}_radiograph.npy", square, base, "radiograph", ["probe"])

    def write_index(self, engine: Engine | None = None) -> Path:
        """Write ``index.json`` (atomically) with every patch and radiograph of the run."""
        path = atomic_write_json(self.output_dir / PATCH_INDEX,
                                 {"mode": self.mode, "patches": self.patches, "images": self.images})
        logger.info("bone patches: %d patches from %d radiographs in %s", len(self.patches), len(self.images),
                    self.output_dir)
        return path
