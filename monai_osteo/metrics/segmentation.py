"""Segmentation metrics for multi-annotator data: consensus Dice per bone and generalized energy distance.

- [0] Kohl et al., 2018, A probabilistic U-Net for segmentation of ambiguous images (GED with d = 1 - IoU).
- [1] hand_xray_osteoporosis_journal, §"Uncertainty-aware segmentation" (cost and evaluation).
"""

from __future__ import annotations

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

__all__ = [
    "ConsensusDiceMetric",
    "GEDMetric",
    "consensus_labels",
    "generalized_energy_distance",
    "iou_distance",
    "per_class_dice",
]


def consensus_labels(masks: torch.Tensor, weights: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """Weighted per-pixel vote of M annotators.

    Args:
        masks: (B, M, *spatial) integer labels in [0, num_classes).
        weights: (B, M) annotator weights beta (None = equal).
        num_classes: C.

    Returns:
        (B, *spatial) int64 labels: argmax_c sum_j beta_j [y_j == c] (ties go to the lower label).
    """
    masks = masks.long()
    b, m = masks.shape[:2]
    w = masks.new_ones((b, m), dtype=torch.float32) / m if weights is None else weights.float()
    votes = torch.zeros((b, num_classes, *masks.shape[2:]), device=masks.device)
    w = w.view(b, m, *([1] * (masks.ndim - 2)))
    for c in range(num_classes):
        votes[:, c] = ((masks == c).float() * w).sum(1)
    return votes.argmax(1)


def per_class_dice(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dice of each foreground class; NaN where the class is absent from both.

    Args:
        pred: (B, *spatial) integer labels.
        target: (B, *spatial) integer labels.
        num_classes: C (class 0 is background and is not scored).

    Returns:
        (B, C - 1) float tensor.
    """
    p = pred.reshape(pred.shape[0], -1)
    t = target.reshape(target.shape[0], -1)
    out = []
    for c in range(1, num_classes):
        pc, tc = p == c, t == c
        inter = (pc & tc).sum(1).float()
        denom = (pc.sum(1) + tc.sum(1)).float()
        out.append(torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.full_like(denom, float("nan"))))
    return torch.stack(out, 1)


def iou_distance(a: torch.Tensor, b: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Pairwise d = 1 - IoU between label maps, IoU averaged over foreground classes present in either map.

    Args:
        a: (Na, *spatial) integer labels.
        b: (Nb, *spatial) integer labels.
        num_classes: C.

    Returns:
        (Na, Nb) distances in [0, 1]; 0 where neither map has any foreground.
    """
    a1 = torch.nn.functional.one_hot(a.reshape(a.shape[0], -1).long(), num_classes)[..., 1:].float()
    b1 = torch.nn.functional.one_hot(b.reshape(b.shape[0], -1).long(), num_classes)[..., 1:].float()
    inter = torch.einsum("ipc,jpc->ijc", a1, b1)
    union = a1.sum(1)[:, None, :] + b1.sum(1)[None, :, :] - inter
    present = union > 0
    iou = torch.where(present, inter / union.clamp_min(1), torch.zeros_like(inter))
    n = present.sum(-1)
    mean_iou = torch.where(n > 0, iou.sum(-1) / n.clamp_min(1), torch.ones_like(n, dtype=iou.dtype))
    return 1.0 - mean_iou


def generalized_energy_distance(samples: torch.Tensor, sample_weights: torch.Tensor | None, annotations: torch.Tensor,
                                annotation_weights: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """Squared GED between a weighted set of predicted label maps and weighted annotations of one image.

    ``D^2 = 2 E[d(S, Y)] - E[d(S, S')] - E[d(Y, Y')]`` with independent draws S, S' ~ alpha and Y, Y' ~ beta
    (so a draw may pair with itself, d = 0) and d = 1 - IoU.

    Args:
        samples: (N, *spatial) predicted labels (e.g. argmax of each hypothesis).
        sample_weights: (N,) alpha summing to 1, or None for equal weights.
        annotations: (M, *spatial) annotator labels.
        annotation_weights: (M,) beta summing to 1, or None.
        num_classes: C.
    """
    n, m = samples.shape[0], annotations.shape[0]
    a = samples.new_full((n,), 1.0 / n, dtype=torch.float32) if sample_weights is None else sample_weights.float()
    b = (samples.new_full((m,), 1.0 / m, dtype=torch.float32) if annotation_weights is None
         else annotation_weights.float())
    cross = a @ iou_distance(samples, annotations, num_classes) @ b
    within_s = a @ iou_distance(samples, samples, num_classes) @ a
    within_y = b @ iou_distance(annotations, annotations, num_classes) @ b
    return 2 * cross - within_s - within_y


class ConsensusDiceMetric(CumulativeIterationMetric):
    """Per-bone Dice of the predicted labels against the annotators' weighted consensus.

    ``__call__(y_pred, y)`` with ``y_pred`` (B, C, *spatial) class probabilities (e.g. the mixture mean) and
    ``y`` a dict ``{"masks": (B, M, *spatial), "weights": (B, M) or None}``; ``aggregate()`` returns the mean
    over images and bones (NaNs ignored), or per bone with ``reduction="mean_batch"``.
    """

    def __init__(self, num_classes: int, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.reduction = reduction

    def __call__(self, y_pred: torch.Tensor, y=None):  # y is a dict, not MONAI's list of channel-first items
        ret = self._compute_tensor(y_pred, y)
        self.extend(ret)
        return ret

    def _compute_tensor(self, y_pred: torch.Tensor, y=None) -> torch.Tensor:  # type: ignore[override]
        masks, weights = y["masks"], y.get("weights")
        target = consensus_labels(masks.detach(), None if weights is None else weights.detach(), self.num_classes)
        return per_class_dice(y_pred.detach().argmax(1), target, self.num_classes)

    def aggregate(self, reduction: MetricReduction | str | None = None):
        data = self.get_buffer()
        f, _ = do_metric_reduction(data, reduction or self.reduction)
        return f


class GEDMetric(CumulativeIterationMetric):
    """Squared generalized energy distance between predicted hypotheses and annotations, averaged over images.

    ``__call__(y_pred, y)`` with ``y_pred`` a dict ``{"samples": (B, N, *spatial) labels, "alpha": (B, N)}`` and ``y``
    a dict ``{"masks": (B, M, *spatial), "weights": (B, M) or None}`` (dicts, because Ignite would unroll tuples).
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def __call__(self, y_pred, y=None):  # dicts, not MONAI's list of channel-first items
        ret = self._compute_tensor(y_pred, y)
        self.extend(ret)
        return ret

    def _compute_tensor(self, y_pred, y=None) -> torch.Tensor:  # type: ignore[override]
        samples, alpha = y_pred["samples"], y_pred.get("alpha")
        masks, weights = y["masks"], y.get("weights")
        out = [
            generalized_energy_distance(samples[i], None if alpha is None else alpha[i], masks[i],
                                        None if weights is None else weights[i], self.num_classes)
            for i in range(samples.shape[0])
        ]
        return torch.stack(out)[:, None]

    def aggregate(self):
        data = self.get_buffer()
        f, _ = do_metric_reduction(data, MetricReduction.MEAN)
        return f
