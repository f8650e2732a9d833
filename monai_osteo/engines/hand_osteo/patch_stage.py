"""Stage 2: segment every radiograph, cut the 7 bone patches at native scale and cache them with an index."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from monai_osteo.data import LoadRadiograph
from monai_osteo.engines.hand_osteo.common import atomic_write_json, datalist_items, resolve_device
from monai_osteo.engines.hand_osteo.segment import segment_radiograph
from monai_osteo.engines.hand_osteo.segmentation_stage import SegmentationStage
from monai_osteo.engines.hand_osteo.stage import PipelineStage
from monai_osteo.transforms import ExtractBonePatches

__all__ = ["BonePatchStage", "save_patch"]

logger = logging.getLogger("monai_osteo.hand_osteo")


def save_patch(path: Path, patch: np.ndarray) -> None:
    """float16 .npy of a (1, s, s) patch, written atomically (patches are in [0, 1]; float16 keeps 11 bits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(patch, dtype=np.float16))
    os.replace(tmp, path)


class BonePatchStage(PipelineStage):
    """Segment each radiograph with the trained network and store its bone patches (image ⊙ mask, native scale).

    ``mode="bones"`` (the method): the mixture-mean probabilities are upsampled to full resolution and
    :class:`~monai_osteo.transforms.ExtractBonePatches` cuts one patch per bone found. ``mode="random"`` is the
    paper's "no segmentation" ablation (Table 4): no segmentation; for pretraining ``random_patches`` random
    squares of the raw radiograph per image, and for the probe the whole radiograph (one prediction per subject).

    Outputs: ``patches/*.npy`` (float16 (1, s, s)) and ``index.json`` with one record per patch: ``patch``
    (relative path), ``bone``, ``image_id``, ``subject_id``, ``label`` (-1 unlabelled), ``split``, ``set``
    (datalist key), ``role`` ("ssl" and/or "probe"), plus per-image records (bones found, segmentation
    confidence) and the files that could not be read (reported, skipped).

    Args:
        datalist: MONAI datalist.
        output_dir: cache folder.
        segmentation: the trained :class:`SegmentationStage` (run first if needed); unused with ``mode="random"``.
        keys: datalist keys to patch.
        ssl_splits: splits whose patches pretraining may use (the test subjects never are).
        mode: "bones" or "random".
        margin, min_area: see :class:`~monai_osteo.transforms.ExtractBonePatches`.
        random_patches: patches per radiograph with ``mode="random"``.
        random_patch_fraction: their side as a fraction of the radiograph's shorter side.
        limit: at most this many radiographs per key and split (tests).
        seed: seed of the random patches.
        device: "auto", "cpu", "cuda".
        resume: skip when done with the same settings.
    """

    name = "patches"

    def __init__(self, datalist: str | os.PathLike, output_dir: str | os.PathLike,
                 segmentation: SegmentationStage | None = None,
                 keys: Sequence[str] = ("training", "validation", "test", "unlabeled"),
                 ssl_splits: Sequence[str] = ("training",), mode: str = "bones", margin: float = 0.05,
                 min_area: float = 5e-4, random_patches: int = 7, random_patch_fraction: float = 0.3,
                 limit: int | None = None, seed: int = 0, device: str = "auto", resume: bool = True) -> None:
        super().__init__(output_dir, resume)
        if mode not in ("bones", "random"):
            raise ValueError(f"mode must be 'bones' (segment, 7 bone patches) or 'random' (no segmentation "
                             f"ablation), got {mode!r}.")
        if mode == "bones" and segmentation is None:
            raise ValueError("segmentation must be the SegmentationStage with mode='bones'.")
        if not 0 < random_patch_fraction <= 1:
            raise ValueError(f"random_patch_fraction must be in (0, 1], got {random_patch_fraction!r}.")
        self.datalist = Path(datalist)
        self.segmentation = segmentation
        self.keys, self.ssl_splits, self.mode = tuple(keys), tuple(ssl_splits), mode
        self.extractor = ExtractBonePatches(margin=margin, min_area=min_area)
        self.margin, self.min_area = margin, min_area
        self.random_patches, self.random_patch_fraction = int(random_patches), float(random_patch_fraction)
        self.limit, self.seed = limit, int(seed)
        self.device = resolve_device(device)

    @property
    def index_file(self) -> Path:
        return self.output_dir / "index.json"

    def settings(self) -> dict:
        seg = self.segmentation.settings() if self.mode == "bones" else None
        return {"datalist": str(self.datalist.resolve()), "segmentation": seg, "keys": self.keys,
                "ssl_splits": self.ssl_splits, "mode": self.mode, "margin": self.margin, "min_area": self.min_area,
                "random_patches": self.random_patches, "random_patch_fraction": self.random_patch_fraction,
                "limit": self.limit, "seed": self.seed}

    def result(self) -> dict:
        return json.loads(self.index_file.read_text())

    def records(self, role: str | None = None, splits: Sequence[str] | None = None) -> list[dict]:
        """Patch records (absolute ``patch`` paths) of ``role`` ("ssl"/"probe") and ``splits``; [] before the run."""
        if not self.index_file.is_file():
            return []
        index = json.loads(self.index_file.read_text())
        out = []
        for r in index["patches"]:
            if (role is None or role in r["role"]) and (splits is None or r["split"] in splits):
                out.append(dict(r, patch=str(self.output_dir / r["patch"])))
        return out

    def _run(self) -> dict:
        net = None
        if self.mode == "bones":
            net = self.segmentation.trained_network().to(self.device)
            size = self.segmentation.spatial_size
        items = datalist_items(self.datalist, self.keys)
        loader = LoadRadiograph()
        rng = np.random.default_rng(self.seed)
        patches, images, failures, used = [], [], [], set()
        counts: dict[str, int] = {}
        for item in tqdm(items, desc="bone patches", unit="image", disable=None):
            key = item["set"]
            counts[key] = counts.get(key, 0) + 1
            if self.limit is not None and counts[key] > self.limit:
                continue
            split = item.get("split", key)
            label = int(item["label"]) if "label" in item else -1
            roles = (["ssl"] if split in self.ssl_splits else []) + (["probe"] if label >= 0 else [])
            if not roles:
                continue
            image_id = _image_id(item["image"], used)
            try:
                img = torch.as_tensor(np.asarray(loader(item["image"])), dtype=torch.float32)
            except Exception as e:  # noqa: BLE001 - a batch job reports the bad file and goes on
                logger.error("%s: skipped (%s)", item["image"], e)
                failures.append({"image": str(item["image"]), "error": str(e)})
                continue
            base = {"image_id": image_id, "subject_id": str(item.get("subject_id", image_id)), "label": label,
                    "split": split, "set": key}
            if self.mode == "bones":
                found, conf = self._bone_patches(net, img.to(self.device), size, base, roles, patches)
                images.append({**base, "bones_found": found, "confidence": conf})
            else:
                self._random_patches(img, base, roles, patches, rng)
                images.append({**base, "bones_found": [], "confidence": None})
        index = {"mode": self.mode, "patches": patches, "images": images, "failures": failures}
        atomic_write_json(self.index_file, index)
        logger.info("patches: %d patches from %d radiographs (%d unreadable) in %s", len(patches), len(images),
                    len(failures), self.output_dir)
        return index

    def _bone_patches(self, net, img, size, base, roles, out) -> tuple[list[str], float]:
        seg = segment_radiograph(net, img, size)
        prob = seg["prob"]
        bones, not_found = self.extractor.find_bones(prob, tuple(img.shape[1:]))
        patches, _ = self.extractor.make_patches(img, bones, not_found, masks=False)
        found = []
        for bone, p in zip(bones, patches):
            rel = f"patches/{base['image_id']}_{bone.name}.npy"
            save_patch(self.output_dir / rel, p.cpu().numpy())
            out.append({**base, "patch": rel, "bone": bone.name, "role": roles, "area": int(bone.area)})
            found.append(bone.name)
        fg = prob.argmax(0) > 0
        conf = float(prob.max(0).values[fg].mean()) if bool(fg.any()) else 0.0
        return found, conf

    def _random_patches(self, img, base, roles, out, rng) -> None:
        h, w = img.shape[1:]
        if "ssl" in roles:
            side = max(8, int(round(self.random_patch_fraction * min(h, w))))
            for j in range(self.random_patches):
                r, c = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
                rel = f"patches/{base['image_id']}_random{j}.npy"
                save_patch(self.output_dir / rel, img[:, r:r + side, c:c + side].cpu().numpy())
                out.append({**base, "patch": rel, "bone": f"random{j}", "role": ["ssl"]})
        if "probe" in roles:
            side = max(h, w)
            square = torch.zeros((1, side, side), dtype=img.dtype)
            square[:, (side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = img.cpu()
            rel = f"patches/{base['image_id']}_radiograph.npy"
            save_patch(self.output_dir / rel, square.numpy())
            out.append({**base, "patch": rel, "bone": "radiograph", "role": ["probe"]})


def _image_id(path: str, used: set[str]) -> str:
    """Short id from the file name stem (+ a hash when stems collide)."""
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(str(path)).stem)[:40] or "image"
    ident = stem
    if ident in used:
        ident = f"{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    used.add(ident)
    return ident
