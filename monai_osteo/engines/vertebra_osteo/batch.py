"""Batches, outputs and metrics of the vertebra_osteo fine-tuning and evaluation workflows.

The network (:class:`~monai_osteo.networks.nets.VertebraNet`) takes the ROI and the DXA device; a MONAI
``SupervisedTrainer``/``SupervisedEvaluator`` passes the device through ``prepare_batch`` (its ``args`` reach
the network through the inferer), so neither engine is subclassed. Targets are one (B, 3) tensor: label (-1 =
missing), standardised BMD (NaN = missing), position index 0-17 (-1 = missing), as
:class:`~monai_osteo.losses.MultiTaskLoss` reads them.

- [0] Huang et al., TP-SwAV + MoE (``papers/vertebral_ct_tpswav_moe.txt``) §2.2-2.3, Eqs. 2-4.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from monai.engines.utils import PrepareBatch
from sklearn.metrics import f1_score, roc_auc_score

__all__ = ["VertebraBatch", "screening_output", "positive_f1", "safe_auc", "bmd_output", "mean_abs_error"]


class VertebraBatch(PrepareBatch):
    """``prepare_batch`` of the vertebra workflows: ``(image, target, (device,), {})``.

    Args:
        image_key: the ROI (B, 1, D, H, W).
        target_key: the (B, 3) targets (absent at inference: ``None`` is returned as the target).
        device_key: the DXA device index (B,) the gate is conditioned on (Eq. 2).
    """

    def __init__(self, image_key: str = "image", target_key: str = "target", device_key: str = "device") -> None:
        self.image_key, self.target_key, self.device_key = image_key, target_key, device_key

    def __call__(self, batchdata: Mapping, device: str | torch.device | None = None, non_blocking: bool = False,
                 **kwargs) -> tuple:
        if self.device_key not in batchdata:
            raise ValueError(f"batch has no {self.device_key!r} (the DXA device index the MoE gate needs), keys "
                             f"{sorted(batchdata)}; records need 'device_index' (see the vertebra_osteo docs).")
        image = torch.as_tensor(batchdata[self.image_key]).to(device=device, non_blocking=non_blocking)
        dev = torch.as_tensor(batchdata[self.device_key]).long().reshape(-1).to(device=device)
        target = batchdata.get(self.target_key)
        if isinstance(target, (list, tuple)):  # a list of per-column tensors: stack to (B, 3)
            target = torch.stack([torch.as_tensor(t) for t in target], dim=1)
        if target is not None:
            target = torch.as_tensor(target).float().to(device=device, non_blocking=non_blocking)
        return image, target, (dev,), {}


def screening_output(output: Mapping, num_classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probability of osteoporosis, label)`` of the labelled rows of an engine output (``pred``, ``label``)."""
    pred, target = output["pred"], output["label"]
    prob = torch.softmax(pred[:, :num_classes].float(), dim=1)[:, 1]
    label = target[:, 0]
    keep = label >= 0
    return prob[keep].detach(), label[keep].long().detach()


def bmd_output(output: Mapping, num_classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predicted, true)`` standardised BMD of the rows that have a BMD."""
    pred, target = output["pred"], output["label"]
    bmd, true = pred[:, num_classes].float(), target[:, 1]
    keep = torch.isfinite(true)
    return bmd[keep].detach(), true[keep].detach()


def positive_f1(prob: torch.Tensor, label: torch.Tensor, threshold: float = 0.5) -> float:
    """F1 of the positive (osteoporosis) class at ``threshold`` (the paper's model-selection metric, V12)."""
    y = label.cpu().numpy().astype(int)
    p = (prob.cpu().numpy() >= threshold).astype(int)
    return float(f1_score(y, p, zero_division=0)) if len(y) else 0.0


def safe_auc(prob: torch.Tensor, label: torch.Tensor) -> float:
    """ROC AUC, NaN when one class is absent (undefined, not 0.5)."""
    y = label.cpu().numpy().astype(int)
    return float(roc_auc_score(y, prob.cpu().numpy())) if len(np.unique(y)) == 2 else float("nan")


def mean_abs_error(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Mean absolute error (in the units given, standardised BMD during validation)."""
    return float((pred - true).abs().mean()) if len(true) else float("nan")


def targets_of(record: Mapping, bmd_mean: float, bmd_std: float) -> list[float]:
    """(label, standardised BMD, position index) of a record; -1 / NaN where absent."""
    label = record.get("label")
    bmd = record.get("bmd")
    pos = record.get("position")
    return [float(label) if label is not None else -1.0,
            (float(bmd) - bmd_mean) / bmd_std if bmd is not None else float("nan"),
            float(int(pos) - 1) if pos is not None and int(pos) >= 1 else -1.0]

