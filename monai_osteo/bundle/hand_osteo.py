"""Helpers the hand_osteo stage configs call: which radiographs to patch, the patch records, the exported model.

- [0] hand_xray_osteoporosis_journal (Figs. 1-4, Eq. 10).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from monai_osteo.bundle.datalist import datalist_items
from monai_osteo.io import atomic_copy, atomic_save, atomic_write_json

__all__ = ["RECORDED_SETTINGS", "class_weights", "export_bone_classifier", "load_encoder", "patch_records",
           "patch_sources", "recorded_settings", "ssl_batch_sampler", "write_run_manifest"]

#: ``run.json`` key -> config id: the classifier input and features a hand_osteo run was trained with
RECORDED_SETTINGS = {"probe_spatial_size": "patch_size", "patch_normalization": "patch_normalization",
                     "feature_pooling": "feature_pooling"}
#: what a run trained before an option existed used (``run.json`` without the key): no normalisation (before 0.3.2),
#: the last stage's average (before 0.4.0)
_BEFORE_THE_OPTION = {"patch_normalization": None, "feature_pooling": "avg"}

logger = logging.getLogger("monai_osteo.hand_osteo")
PATCH_INDEX = "index.json"


def patch_sources(datalist: str | os.PathLike, keys: Sequence[str] = ("training", "validation", "test", "unlabeled"),
                  ssl_splits: Sequence[str] = ("training",), limit: int | None = None) -> list[dict]:
    """The radiographs to cut bone patches from, with their roles.

    A radiograph's patches serve pretraining ("ssl") if its split is in ``ssl_splits`` (never the test subjects)
    and the probe ("probe") if it has a label. Records: ``image`` (path), ``record_index``, ``image_id`` (file
    stem, made unique), ``subject_id``, ``label`` (-1 unlabelled), ``split``, ``set`` (datalist key), ``roles``.
    """
    out, used = [], set()
    for item in datalist_items(datalist, keys, limit=limit):
        split = item.get("split", item["set"])
        label = int(item["label"]) if "label" in item and item["label"] is not None else -1
        roles = (["ssl"] if split in ssl_splits else []) + (["probe"] if label >= 0 else [])
        if not roles:
            continue
        image_id = _image_id(item["image"], used)
        out.append({"image": item["image"], "record_index": len(out), "image_id": image_id,
                    "subject_id": str(item.get("subject_id", image_id)), "label": label, "split": split,
                    "set": item["set"], "roles": roles})
    if not out:
        raise ValueError(f"{datalist}: no radiograph to cut bone patches from in keys {list(keys)}; the datalist needs "
                         "labelled subjects (training/validation/test) or unlabelled radiographs.")
    return out


def _image_id(path: str, used: set[str]) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(str(path)).stem)[:40] or "image"
    ident = stem if stem not in used else f"{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    used.add(ident)
    return ident


def patch_records(patches_dir: str | os.PathLike, role: str, splits: Sequence[str] | None = None,
                  labels: bool = True) -> list[dict]:
    """Patch records of the cache in ``patches_dir`` with ``role`` ("ssl"/"probe") and ``splits``.

    Each record has ``image`` (absolute patch path), ``label`` (-1 when ``labels`` is False: the SSL methods other
    than SupCon never see labels), ``subject_id``, ``bone``, ``split``, ``image_id``.
    """
    if role not in ("ssl", "probe"):
        raise ValueError(f"role must be 'ssl' or 'probe', got {role!r}.")
    index = Path(patches_dir) / PATCH_INDEX
    if not index.is_file():
        raise FileNotFoundError(f"{index}: no bone-patch cache; run the patch stage first "
                                "(configs/extract_patches.json, or configs/train.json, which runs every stage).")
    data = json.loads(index.read_text())
    out = []
    for r in data["patches"]:
        if role in r["role"] and (splits is None or r["split"] in splits):
            out.append({"image": str(Path(patches_dir) / r["patch"]), "label": int(r["label"]) if labels else -1,
                        **{k: r[k] for k in ("subject_id", "bone", "split", "image_id")}})
    if not out:
        raise ValueError(f"{index}: no {role!r} patches in splits {splits}; the datalist must hold such subjects.")
    return out


def class_weights(records: Sequence[dict], num_classes: int = 2) -> torch.Tensor:
    """Inverse-frequency class weights ``n / (C n_c)`` of the records' labels (balanced cross-entropy)."""
    counts = torch.bincount(torch.as_tensor([int(r["label"]) for r in records]), minlength=num_classes).float()
    return counts.sum() / (num_classes * counts.clamp_min(1))


def ssl_batch_sampler(records: Sequence[dict], grouping: str | None, batch_size: int, seed: int = 0,
                      sampler: object | None = None):
    """The SSL stage's ``batch_sampler``: ``None`` (``grouping`` None: the loader's own shuffled batches) or, for
    ``grouping="bone"``, a :class:`~monai_osteo.data.GroupedBatchSampler` of single-bone batches over ``records``
    (shards across ranks itself, so a ``sampler`` such as ``DistributedSampler`` must not be set as well)."""
    if grouping is None:
        return None
    if grouping != "bone":
        raise ValueError(f"ssl_batch_grouping must be null (mixed batches) or 'bone' (one bone per batch), "
                         f"got {grouping!r}.")
    if sampler is not None:
        raise ValueError("ssl_batch_grouping 'bone' builds a batch sampler that shards across ranks itself; leave "
                         "train#sampler null (multi_gpu_ssl.json sets a DistributedSampler: override it with null).")
    from monai_osteo.data import GroupedBatchSampler

    return GroupedBatchSampler([r["bone"] for r in records], batch_size, drop_last=True, seed=seed)


def load_encoder(classifier: torch.nn.Module, checkpoint: str | os.PathLike | None) -> torch.nn.Module:
    """``classifier`` with its encoder loaded from an SSL checkpoint (``None``: left at its initialisation)."""
    if checkpoint is None:
        return classifier
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: no pretrained encoder; run the SSL stage first (configs/train_ssl.json)"
                                " or set ssl_enabled to false for the supervised-only ablation.")
    return classifier.load_encoder(torch.load(checkpoint, map_location="cpu"))


def export_bone_classifier(classifier: torch.nn.Module, probe_checkpoint: str | os.PathLike,
                           output: str | os.PathLike) -> str:
    """Save ``classifier`` (its encoder loaded) with the best linear probe folded into its ``fc``: patch -> logits."""
    from monai_osteo.networks.nets import LinearProbe

    state = torch.load(probe_checkpoint, map_location="cpu")
    probe = LinearProbe(classifier.fc.in_features, classifier.fc.out_features)
    probe.load_state_dict(state)
    w, b = probe.folded()
    with torch.no_grad():
        classifier.fc.weight.copy_(w.to(classifier.fc.weight.device))
        classifier.fc.bias.copy_(b.to(classifier.fc.bias.device))
    atomic_save({k: v.detach().cpu() for k, v in classifier.state_dict().items()}, output)
    logger.info("bone classifier (encoder + folded linear probe) saved to %s", output)
    return str(output)


def write_run_manifest(output_dir: str | os.PathLike, classifier: str | os.PathLike,
                       segmentation: str | os.PathLike | None, patches_dir: str | os.PathLike, patch_size: int,
                       patch_mode: str, ssl_dir: str | os.PathLike | None, backbone: str | None = None,
                       patch_normalization: str | None = None, feature_pooling: str = "avg") -> dict:
    """Copy the final models to ``output_dir`` (``model.pt``, ``segmentation.pt``) and write ``run.json``."""
    out = Path(output_dir)
    atomic_copy(classifier, out / "model.pt")
    manifest = {"classifier": str(out / "model.pt"), "patches": str(patches_dir), "probe_spatial_size": int(patch_size),
                "patch_mode": patch_mode, "patch_normalization": patch_normalization,
                "feature_pooling": str(feature_pooling),
                "ssl": None if ssl_dir is None else str(ssl_dir)}
    if backbone is not None:
        manifest["backbone"] = str(backbone)
    if segmentation is not None and patch_mode == "bones":
        atomic_copy(segmentation, out / "segmentation.pt")
        manifest["segmentation"] = str(out / "segmentation.pt")
    atomic_write_json(out / "run.json", manifest)
    return manifest


def recorded_settings(run_dir: str | os.PathLike | None) -> dict:
    """The config values (ids of :data:`RECORDED_SETTINGS`) a run's classifier was trained with, from its ``run.json``.

    ``{}`` without a ``run.json`` (a models folder that is not a train.json run: the configs decide). A ``run.json``
    written before ``patch_normalization`` or ``feature_pooling`` existed gives what such runs used (``None``,
    ``"avg"``). ``inference.json`` and the MONAI Label app screen with these values, so a run is screened with the
    input and features its probe was trained on whatever preset the screening is layered with.
    """
    manifest = Path(run_dir) / "run.json" if run_dir is not None else None
    if manifest is None or not manifest.is_file():
        return {}
    run = json.loads(manifest.read_text())
    return {**_BEFORE_THE_OPTION, **{setting: run[key] for key, setting in RECORDED_SETTINGS.items() if key in run}}
