"""S4MI classification metrics (spec wave2 §4.2): CASS micro F1 / recall, argmax macro F1 and balanced accuracy.

CASS's ``MyF1Score`` counts TP/FP/FN over all (image, class) pairs after multi-label thresholding ``sigmoid > 0.5``,
also on the multi-class datasets (one-hot targets), and returns ``F1 = 2TP / (2TP + FP + FN)`` (Dermatomyositis,
Dermofit) or ``recall = TP / (TP + FN)`` (ISIC). These equal scikit-learn's ``f1_score`` / ``recall_score`` with
``average="micro"`` on the multi-hot arrays. For multi-class data the argmax macro F1 and balanced accuracy are given
too; they equal scikit-learn's ``f1_score(average="macro")`` and ``balanced_accuracy_score`` (averaged over the
classes present in the targets or predictions, resp. in the targets, as scikit-learn does).

The ignite metrics keep sum-reducible state (counts, a confusion matrix) rather than calling scikit-learn on stored
predictions, so that ``sync_all_reduce`` makes them exact under distributed evaluation; the tests compare them with
scikit-learn. Degenerate cases follow scikit-learn's ``zero_division`` default: micro F1 with no positive target and
no positive prediction, and micro recall with no positive target, return ``zero_division`` (0.0), without a warning.

- [0] Singh et al., 2024, Shifting to machine supervision (S4MI), §Results/Classification (F1 and recall).
- [1] Singh, Sizikova & Cirrone, 2022, CASS: cross architectural self-supervision (``MyF1Score``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from monai.handlers.utils import from_engine

__all__ = [
    "BalancedAccuracyMetric",
    "MacroF1Metric",
    "MicroF1Metric",
    "MicroRecallMetric",
    "balanced_accuracy",
    "confusion_counts",
    "macro_f1_argmax",
    "micro_counts",
    "micro_f1",
    "micro_recall",
]

_ACTIVATIONS = {"sigmoid": torch.sigmoid, "softmax": lambda x: torch.softmax(x, 1), None: lambda x: x}


def _as_batch(x) -> torch.Tensor:
    """Tensor from a tensor/array or from a decollated list of per-item tensors (MONAI ``from_engine``)."""
    if isinstance(x, (list, tuple)):
        return torch.stack([torch.as_tensor(i) for i in x])
    return torch.as_tensor(x)


def _multi_hot(y_true, num_classes: int) -> torch.Tensor:
    """(N, C) bool targets from (N, C) multi-hot/one-hot (binarised at 0.5) or (N,) / (N, 1) class indices."""
    y = _as_batch(y_true)
    if y.ndim == 2 and y.shape[1] == num_classes:
        return y > 0.5
    idx = y.reshape(-1).long()
    if idx.numel() and (idx.min() < 0 or idx.max() >= num_classes):
        raise ValueError(f"class-index targets must be in [0, {num_classes}), got range [{int(idx.min())}, "
                         f"{int(idx.max())}]; pass (N, {num_classes}) multi-hot targets or fix the label map.")
    return torch.nn.functional.one_hot(idx, num_classes).bool()


def _scores(y_prob) -> torch.Tensor:
    p = _as_batch(y_prob)
    if p.ndim != 2:
        raise ValueError(f"predictions must be (N, C) scores, got shape {tuple(p.shape)}.")
    return p.detach()


def micro_counts(y_prob, y_true, threshold: float = 0.5) -> torch.Tensor:
    """``[TP, FP, FN]`` over all (image, class) pairs of ``y_prob > threshold`` against the targets.

    Args:
        y_prob: (N, C) probabilities.
        y_true: (N, C) multi-hot / one-hot targets, or (N,) class indices (made one-hot).
        threshold: a pair is predicted positive when its probability is strictly above it (CASS).
    """
    p = _scores(y_prob)
    pred, true = p > threshold, _multi_hot(y_true, p.shape[1]).to(p.device)
    if pred.shape != true.shape:
        raise ValueError(f"targets must match the predictions' {tuple(pred.shape)}, got {tuple(true.shape)}.")
    return torch.stack([(pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()]).double()


def _f1(counts: torch.Tensor, zero_division: float) -> float:
    tp, fp, fn = (float(c) for c in counts[:3])
    return 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else float(zero_division)


def _recall(counts: torch.Tensor, zero_division: float) -> float:
    tp, _, fn = (float(c) for c in counts[:3])
    return tp / (tp + fn) if tp + fn > 0 else float(zero_division)


def micro_f1(y_prob, y_true, threshold: float = 0.5, zero_division: float = 0.0) -> float:
    """CASS/S4MI F1 = ``2TP / (2TP + FP + FN)`` of :func:`micro_counts`; ``zero_division`` when that is 0/0."""
    return _f1(micro_counts(y_prob, y_true, threshold), zero_division)


def micro_recall(y_prob, y_true, threshold: float = 0.5, zero_division: float = 0.0) -> float:
    """CASS/S4MI recall = ``TP / (TP + FN)`` of :func:`micro_counts`; ``zero_division`` without positive targets."""
    return _recall(micro_counts(y_prob, y_true, threshold), zero_division)


def confusion_counts(y_prob, y_true) -> torch.Tensor:
    """(C, C) confusion matrix (rows: true class, columns: argmax of ``y_prob``) of multi-class data.

    Args:
        y_prob: (N, C) scores (logits or probabilities: only the argmax matters).
        y_true: (N,) class indices or (N, C) one-hot targets.
    """
    p = _scores(y_prob)
    c = p.shape[1]
    y = _as_batch(y_true)
    if y.ndim == 2 and y.shape[1] == c and c > 1:
        if not bool(((y > 0.5).sum(1) == 1).all()):
            raise ValueError("argmax metrics need one class per item, got multi-hot rows that are not one-hot; use "
                             "MicroF1Metric/micro_f1 for multi-label data.")
        y = y.argmax(1)
    y = _multi_hot(y.reshape(-1), c).long().argmax(1).to(p.device)  # validates the range
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"targets must have one class per prediction ({p.shape[0]}), got {y.shape[0]}.")
    return torch.bincount(y * c + p.argmax(1), minlength=c * c).reshape(c, c).double()


def _macro_f1(cm: torch.Tensor) -> float:
    tp, support, predicted = cm.diag(), cm.sum(1), cm.sum(0)
    present = support + predicted > 0  # scikit-learn's default labels: classes in y_true or y_pred
    return float((2 * tp[present] / (support + predicted)[present]).mean())


def _balanced_accuracy(cm: torch.Tensor) -> float:
    support = cm.sum(1)
    present = support > 0  # scikit-learn drops classes absent from y_true (with a warning)
    return float((cm.diag()[present] / support[present]).mean())


def macro_f1_argmax(y_prob, y_true) -> float:
    """Macro F1 of ``argmax(y_prob)`` (multi-class), equal to ``sklearn.metrics.f1_score(average="macro")``."""
    return _macro_f1(confusion_counts(y_prob, y_true))


def balanced_accuracy(y_prob, y_true) -> float:
    """Mean per-class recall of ``argmax(y_prob)``, equal to ``sklearn.metrics.balanced_accuracy_score``."""
    return _balanced_accuracy(confusion_counts(y_prob, y_true))


class MicroF1Metric(Metric):
    """Ignite metric of :func:`micro_f1` for a MONAI ``SupervisedEvaluator`` (``key_val_metric``).

    Each iteration reads ``(pred, label)`` through ``output_transform`` (default ``from_engine(["pred", "label"])``,
    batched or decollated outputs): ``pred`` (B, C) logits, ``label`` (B, C) multi-hot / one-hot or (B,) class
    indices. ``activation`` maps logits to probabilities before thresholding: ``"sigmoid"`` (CASS, also for
    multi-class data), ``"softmax"``, or None when ``pred`` already holds probabilities.

    Args:
        threshold: probability above which a (image, class) pair is positive.
        activation: ``"sigmoid"``, ``"softmax"`` or None.
        zero_division: value when the score is 0/0 (scikit-learn's default 0.0).
        output_transform: engine output -> ``(pred, label)``.
        device: as ``ignite.metrics.Metric``.
    """

    def __init__(self, threshold: float = 0.5, activation: str | None = "sigmoid", zero_division: float = 0.0,
                 output_transform: Callable | None = None, device: str | torch.device = "cpu") -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of 'sigmoid', 'softmax' or None, got {activation!r}.")
        self.threshold, self.activation, self.zero_division = float(threshold), activation, float(zero_division)
        super().__init__(output_transform=output_transform or from_engine(["pred", "label"]), device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._counts = torch.zeros(4, dtype=torch.float64, device=self._device)  # TP, FP, FN, items

    @reinit__is_reduced
    def update(self, output) -> None:
        pred, label = output
        probs = _ACTIVATIONS[self.activation](_scores(pred).float())
        counts = micro_counts(probs, label, self.threshold).to(self._device)
        self._counts += torch.cat([counts, counts.new_tensor([probs.shape[0]])])

    @sync_all_reduce("_counts")
    def compute(self) -> float:
        if self._counts[3] == 0:
            raise ValueError(f"{type(self).__name__} must have at least one example before it can be computed.")
        return self._score(self._counts)

    def _score(self, counts: torch.Tensor) -> float:
        return _f1(counts, self.zero_division)


class MicroRecallMetric(MicroF1Metric):
    """Ignite metric of :func:`micro_recall` (CASS's recall switch, ISIC); arguments as :class:`MicroF1Metric`."""

    def _score(self, counts: torch.Tensor) -> float:
        return _recall(counts, self.zero_division)


class MacroF1Metric(Metric):
    """Ignite metric of :func:`macro_f1_argmax` (multi-class), accumulating a confusion matrix.

    Inputs as :class:`MicroF1Metric` (``label`` one-hot or class indices); no activation, the argmax decides.

    Args:
        num_classes: C; default: the width of the first ``pred``.
        output_transform: engine output -> ``(pred, label)``; default ``from_engine(["pred", "label"])``.
        device: as ``ignite.metrics.Metric``.
    """

    def __init__(self, num_classes: int | None = None, output_transform: Callable | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.num_classes = num_classes
        super().__init__(output_transform=output_transform or from_engine(["pred", "label"]), device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        c = self.num_classes or 0
        self._cm = torch.zeros(c, c, dtype=torch.float64, device=self._device)

    @reinit__is_reduced
    def update(self, output) -> None:
        cm = confusion_counts(*output).to(self._device)
        if self._cm.numel() == 0 and self.num_classes is None:
            self._cm = torch.zeros_like(cm)
        if cm.shape != self._cm.shape:
            raise ValueError(f"pred must have {self._cm.shape[0]} classes in every batch, got {cm.shape[0]}; set "
                             "num_classes to the model's output width.")
        self._cm += cm

    @sync_all_reduce("_cm")
    def compute(self) -> float:
        if self._cm.sum() == 0:
            raise ValueError(f"{type(self).__name__} must have at least one example before it can be computed.")
        return self._score(self._cm)

    def _score(self, cm: torch.Tensor) -> float:
        return _macro_f1(cm)


class BalancedAccuracyMetric(MacroF1Metric):
    """Ignite metric of :func:`balanced_accuracy`; arguments as :class:`MacroF1Metric`."""

    def _score(self, cm: torch.Tensor) -> float:
        return _balanced_accuracy(cm)
