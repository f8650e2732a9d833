"""Supervised contrastive loss (SupCon, ``L^sup_out`` of Khosla et al. 2020, Eq. 2), multi-view and multi-GPU.

Written here because lightly (which the project reuses for NT-Xent, VICReg and SwaV) has no SupCon loss.

- [0] Khosla et al., 2020, Supervised Contrastive Learning (Eq. 2, ``L^sup_out``).
- [1] Chen et al., 2020, A Simple Framework for Contrastive Learning of Visual Representations (NT-Xent, the
  special case without labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from lightly.utils import dist as lightly_dist
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["SupConLoss"]


class SupConLoss(_Loss):
    """Supervised contrastive loss ``L^sup_out`` [0] over ``V`` views of ``B`` samples.

    Every one of the ``B * V`` (L2-normalised) views is an anchor ``i``; its contrast set ``A(i)`` is every other
    view in the (gathered) batch and its positives ``P(i)`` are the other views of the same sample plus all views
    of samples with the same label::

        l_i = -(temperature / base_temperature) / |P(i)| * sum_{p in P(i)} log(exp(z_i.z_p / t) / sum_{a in A(i)}
              exp(z_i.z_a / t))

    Unlabelled samples: a label ``< 0`` marks a sample as unlabelled; its only positives are its own other views
    (SimCLR behaviour), and it is never a positive for another sample, though it still serves as a negative. This
    lets unlabelled patches join SupCon batches. ``labels=None`` treats every sample as unlabelled, which is the
    multi-view NT-Xent loss of SimCLR [1].

    Relation to ``lightly.loss.NTXentLoss``: with ``V = 2``, ``labels=None`` (or all labels distinct) and
    ``base_temperature=None``, ``SupConLoss(t)(torch.stack([z0, z1], 1))`` equals ``NTXentLoss(temperature=t)(z0,
    z1)`` (both are the mean over the ``2B`` anchors of the cross-entropy over the ``2B - 1`` other views with the
    other view of the same sample as the only positive); with ``base_temperature = b`` it is ``t / b`` times that.

    Anchors without any positive (``V = 1`` and a label nobody else has, or unlabelled) contribute nothing: their
    per-anchor loss is 0 and ``"mean"`` averages over the anchors that have at least one positive.

    Args:
        temperature: softmax temperature ``t`` (> 0); Khosla et al. use 0.1.
        base_temperature: the loss is scaled by ``temperature / base_temperature`` as in the authors' code (they use
            0.07); ``None`` means ``base_temperature = temperature``, i.e. no rescaling.
        gather_distributed: when ``torch.distributed`` is initialised with world size > 1, gather features and
            labels from all ranks (with ``lightly.utils.dist.gather``, which keeps gradients) so that the contrast
            set spans the global batch; anchors are the local samples only. All ranks must use the same ``B`` and
            ``V``.
        reduction: ``"mean"`` (over anchors with a positive), ``"sum"`` or ``"none"`` (per anchor, shape
            ``(B * V,)``, view-major: entry ``v * B + b`` is view ``v`` of sample ``b``).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        base_temperature: float | None = None,
        gather_distributed: bool = False,
        reduction: LossReduction | str = LossReduction.MEAN,
    ):
        reductions = [r.value for r in LossReduction]
        if str(getattr(reduction, "value", reduction)) not in reductions:
            raise ValueError(f"reduction must be one of {reductions}, got {reduction!r}.")
        super().__init__(reduction=LossReduction(reduction).value)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 (Khosla et al. use 0.1), got {temperature!r}.")
        if base_temperature is not None and base_temperature <= 0:
            raise ValueError(f"base_temperature must be > 0 or None (no rescaling), got {base_temperature!r}.")
        if gather_distributed and not torch.distributed.is_available():
            raise ValueError(
                f"gather_distributed must be False when torch.distributed is not available, got "
                f"{gather_distributed!r}; install a torch build with distributed support or set it to False."
            )
        self.temperature = float(temperature)
        self.base_temperature = float(temperature if base_temperature is None else base_temperature)
        self.gather_distributed = gather_distributed

    def forward(self, features: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor | None = None):
        """Compute the loss.

        Args:
            features: (B, V, D) tensor of ``V`` views per sample, or a list of ``V`` tensors of shape (B, D). Need
                not be normalised (they are L2-normalised here).
            labels: (B,) integer class labels, ``< 0`` for unlabelled samples, or None (all unlabelled: NT-Xent).

        Returns:
            Scalar for ``"mean"``/``"sum"``, else (B * V,) per-anchor losses, in the dtype/device of ``features``.
        """
        if not isinstance(features, torch.Tensor):
            features = list(features)
            if len(features) == 0 or any(f.ndim != 2 or f.shape != features[0].shape for f in features):
                raise ValueError(
                    f"features must be a (B, V, D) tensor or a non-empty list of (B, D) tensors of one shape, got "
                    f"shapes {[tuple(f.shape) for f in features]!r}."
                )
            features = torch.stack(features, dim=1)
        if features.ndim != 3:
            raise ValueError(
                f"features must have shape (B, V, D), got {tuple(features.shape)!r}; add a view axis with "
                f"features.unsqueeze(1) or pass a list of (B, D) views."
            )
        b, v, _ = features.shape
        if labels is not None:
            if labels.shape != (b,) or labels.is_floating_point() or labels.is_complex():
                raise ValueError(
                    f"labels must be an integer tensor of shape ({b},) (negative = unlabelled), got dtype "
                    f"{labels.dtype} and shape {tuple(labels.shape)!r}."
                )
            labels = labels.to(features.device)
        else:
            labels = torch.full((b,), -1, dtype=torch.long, device=features.device)

        z = F.normalize(features, dim=-1)
        offset = 0
        z_all, labels_all = z, labels
        if self.gather_distributed and lightly_dist.world_size() > 1:
            z_all = torch.cat(lightly_dist.gather(z), dim=0)
            labels_all = torch.cat(lightly_dist.gather(labels), dim=0)
            offset = lightly_dist.rank() * b
        n = z_all.shape[0]
        if v * n < 2:
            raise ValueError(f"features must hold at least 2 views in total (B * V >= 2), got shape {(b, v)!r}.")

        # view-major anchors (V*B, D) against the view-major contrast set (V*N, D)
        anchors = z.transpose(0, 1).reshape(v * b, -1)
        contrast = z_all.transpose(0, 1).reshape(v * n, -1)
        logits = anchors @ contrast.T / self.temperature

        dev = features.device
        anchor_ids = (torch.arange(b, device=dev) + offset).repeat(v)
        contrast_ids = torch.arange(n, device=dev).repeat(v)
        anchor_labels, contrast_labels = labels.repeat(v), labels_all.repeat(v)
        self_mask = torch.zeros_like(logits, dtype=torch.bool)
        self_cols = torch.arange(v, device=dev).repeat_interleave(b) * n + anchor_ids  # anchor's own column
        self_mask[torch.arange(v * b, device=dev), self_cols] = True
        same_sample = anchor_ids[:, None] == contrast_ids[None, :]
        same_label = (anchor_labels[:, None] == contrast_labels[None, :]) & (anchor_labels[:, None] >= 0)
        positives = (same_sample | same_label) & ~self_mask

        logits = logits.masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        n_pos = positives.sum(dim=1)
        mean_log_prob_pos = log_prob.masked_fill(~positives, 0.0).sum(dim=1) / n_pos.clamp(min=1)
        loss = -(self.temperature / self.base_temperature) * mean_log_prob_pos

        if self.reduction == LossReduction.SUM.value:
            return loss.sum()
        if self.reduction == LossReduction.NONE.value:
            return loss
        has_pos = n_pos > 0
        return loss[has_pos].mean() if bool(has_pos.any()) else loss.sum() * 0.0
