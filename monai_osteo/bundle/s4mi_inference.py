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
from collections.abc import Mapping

import torch

__all__ = ["class_names", "classification_row_backbone", "row_network",
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
