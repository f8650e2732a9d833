"""Helpers of the s4mi inference configs (``inference_classification.json``, ``inference_segmentation.json``): which
network a trained row holds, the class names, and the writer of the per-image class probabilities.

Inputs are listed and checked by :func:`~monai_osteo.bundle.images.list_images` /
:func:`~monai_osteo.bundle.images.check_images` and masks written by
:class:`~monai_osteo.handlers.mask_writer.SegmentationMaskWriter`, as in the MedSASS ``inference.json``.

- [0] Singh et al., "Shifting to machine supervision: annotation-efficient semi and self-supervised learning for
  automatic medical image segmentation and classification", Sci. Rep. 2024 (S4MI).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from monai_osteo.io import atomic_write_json

__all__ = ["ClassProbabilityWriter", "class_names", "classification_row_backbone", "row_network",
           "segmentation_row_method"]

logger = logging.getLogger("monai_osteo.s4mi")

_CLS_METHODS = ("cass", "dino", "supervised")
_SEG_METHODS = ("cross_teaching", "supervised_unet", "supervised_swin", "supervised_resnet34")


def classification_row_backbone(row: str) -> str:
    """The backbone (``cnn``/``vit``) of a classification row named ``<method>_<backbone>@<percent>``."""
    method, _, rest = str(row).partition("_")
    backbone = rest.split("@", 1)[0]
    if method not in _CLS_METHODS or backbone not in ("cnn", "vit") or "@" not in rest:
        raise ValueError(f"row must name a classification row '<method>_<backbone>@<percent>' (method in "
                         f"{list(_CLS_METHODS)}, backbone cnn or vit, e.g. 'cass_cnn@100'), got {row!r}; with your own "
                         "--model_file also pass --backbone cnn|vit.")
    return backbone


def segmentation_row_method(row: str) -> str:
    """The method of a segmentation row named ``<method>@<percent>`` (``cross_teaching``, ``supervised_<arch>``)."""
    method = str(row).split("@", 1)[0]
    if method not in _SEG_METHODS or "@" not in str(row):
        raise ValueError(f"row must name a segmentation row '<method>@<percent>' (method in {list(_SEG_METHODS)}, "
                         f"e.g. 'cross_teaching@100'), got {row!r}; with your own --model_file also pass "
                         "--seg_method.")
    return method


def row_network(model: torch.nn.Module, seg_method: str, eval_net: str) -> torch.nn.Module:
    """The network ``eval_net`` of the model a segmentation row trains: ``net1`` (``unet``) or ``net2`` (``swin``) of
    a cross-teaching :class:`~monai_osteo.networks.nets.cross_teaching.CrossTeachingPair`, else ``model`` itself.

    The checkpoint is loaded into ``model`` (its keys match: ``net1.*``/``net2.*`` for a pair); the returned
    submodule shares its parameters, so it sees the loaded weights.
    """
    if seg_method == "cross_teaching":
        attr = {"unet": "net1", "swin": "net2"}.get(eval_net)
        if attr is None:
            raise ValueError(f"a cross-teaching row holds a unet (net1) and a swin (net2) network, got eval_net "
                             f"{eval_net!r}: pass --eval_net unet or --eval_net swin.")
        return getattr(model, attr)
    arch = seg_method.split("_", 1)[-1]
    if eval_net != arch:
        raise ValueError(f"row method {seg_method!r} trains one {arch} network, got eval_net {eval_net!r}: pass "
                         f"--eval_net {arch} (or leave it out).")
    return model


def class_names(settings: Mapping, cohort: str, num_classes: int) -> list[str]:
    """``settings[cohort]["class_names"]`` (``cohort_settings`` of train.json), else ``class_0`` ... (checked)."""
    names = list((settings.get(cohort) or {}).get("class_names") or [f"class_{i}" for i in range(num_classes)])
    if len(names) != num_classes or len(set(names)) != len(names):
        raise ValueError(f"class_names must be {num_classes} distinct names (one per output), got {names!r}: set "
                         f"--cohort_settings#{cohort}#class_names or --class_names.")
    return [str(n) for n in names]


class ClassProbabilityWriter:
    """Collect the class probabilities of each image during an evaluator run; at its end write ``predictions.json``.

    Per image (in input order): ``id`` (the batch's ``name_key``: an :func:`~monai_osteo.bundle.output_id` unless the
    user keeps the input names), with ``keep_names`` the ``input`` path, ``probabilities`` by class name (the
    sigmoid of each logit: S4MI/CASS train every output with a sigmoid focal loss, for multi-class data too),
    ``labels`` (the class names with probability > ``threshold``, CASS-literal), and for multi-class data ``class``
    (the argmax, ``class_key`` of the output). Inputs that could not be read (``failed``) are listed with their
    reason. The file is written to a temporary name and renamed (:func:`~monai_osteo.io.atomic_write_json`).

    Args:
        output_dir: where ``predictions.json`` goes.
        class_names: one name per network output.
        failed: the unreadable inputs (``check_images(...)["failed"]``).
        multilabel: the cohort is multi-label (no ``class`` entry).
        threshold: a class is predicted when its probability is strictly above it.
        keep_names: record each input path.
        filename: the file name.
        pred_key, class_key, name_key, source_key: output/batch keys (``pred``: (K,) probabilities per item;
            ``class_key``: the argmax index, absent for multi-label data).
    """

    def __init__(self, output_dir: str | os.PathLike, class_names: Sequence[str], failed: Sequence[dict] = (),
                 multilabel: bool = False, threshold: float = 0.5, keep_names: bool = False,
                 filename: str = "predictions.json", pred_key: str = "pred", class_key: str = "pred_class",
                 name_key: str = "name", source_key: str = "source") -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}.")
        self.output_dir, self.class_names, self.failed = Path(output_dir), [str(c) for c in class_names], list(failed)
        self.multilabel, self.threshold, self.keep_names = multilabel, float(threshold), keep_names
        self.filename = filename
        self.pred_key, self.class_key, self.name_key, self.source_key = pred_key, class_key, name_key, source_key
        self.records: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write_summary)

    def _start(self, engine: Engine | None = None) -> None:
        self.records = []

    def __call__(self, engine: Engine) -> None:
        from monai.data import decollate_batch

        batch, output = engine.state.batch, engine.state.output
        batch = decollate_batch(batch) if isinstance(batch, dict) else batch
        output = decollate_batch(output) if isinstance(output, dict) else output
        for item, out in zip(batch, output):
            self.add(str(item[self.name_key]), out[self.pred_key], out.get(self.class_key), item.get(self.source_key))

    def add(self, name: str, prob: torch.Tensor, argmax=None, source: str | os.PathLike | None = None) -> dict:
        """Record (and return) the entry of one image: ``prob`` is its (K,) class probabilities."""
        p = torch.as_tensor(prob).detach().float().cpu().reshape(-1).tolist()
        if len(p) != len(self.class_names):
            raise ValueError(f"pred must hold {len(self.class_names)} class probabilities (one per class name), got "
                             f"{len(p)}: check num_classes and class_names.")
        entry: dict = {"id": name}
        if self.keep_names and source is not None:
            entry["input"] = str(source)
        entry["probabilities"] = dict(zip(self.class_names, p))
        entry["labels"] = [c for c, v in zip(self.class_names, p) if v > self.threshold]
        if not self.multilabel:
            k = max(range(len(p)), key=p.__getitem__) if argmax is None else int(torch.as_tensor(argmax).reshape(-1)[0])
            entry["class"] = self.class_names[k]
        self.records.append(entry)
        return entry

    def write_summary(self, engine: Engine | None = None) -> Path:
        """``predictions.json``: ``class_names``, ``multilabel``, ``threshold``, ``count``, ``failed_count``,
        ``images`` and ``failed``."""
        summary = {"class_names": self.class_names, "multilabel": self.multilabel, "threshold": self.threshold,
                   "count": len(self.records), "failed_count": len(self.failed), "images": self.records,
                   "failed": self.failed}
        path = atomic_write_json(self.output_dir / self.filename, summary)
        logger.info("classified %d image(s), %d unreadable; predictions in %s", len(self.records), len(self.failed),
                    path)
        return path
