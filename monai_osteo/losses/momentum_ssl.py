"""BYOL / SimSiam / DINO loss over the outputs of :class:`~monai_osteo.networks.nets.EncoderSSLNetwork`.

Reuses lightly's ``NegativeCosineSimilarity`` and ``DINOLoss``; only the view pairing is ours.

- [0] Grill et al., 2020, BYOL: Bootstrap Your Own Latent.
- [1] Chen & He, 2021, SimSiam: Exploring Simple Siamese Representation Learning.
- [2] Caron et al., 2021, DINO: Emerging Properties in Self-Supervised Vision Transformers.
- [3] Singh & Cirrone, MedSASS §3.2 (SSL baselines on ResNet-50).
"""

from __future__ import annotations

import warnings

import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity

__all__ = ["PairSSLLoss"]

METHODS = ("byol", "simsiam", "dino")


class PairSSLLoss(torch.nn.Module):
    """Loss of the networks with a stop-gradient or EMA target (BYOL, SimSiam, DINO).

    - ``"byol"``/``"simsiam"``: mean over the pairs ``(i, j)``, ``i`` a target (global) view, ``j`` any other view,
      of lightly's ``NegativeCosineSimilarity(p_j, z_i)``; with 2 views this is the symmetrised
      ``0.5 * (NCS(p_0, z_1) + NCS(p_1, z_0))`` of lightly's BYOL/SimSiam examples (from ~0 at random init to -1).
    - ``"dino"``: lightly's ``DINOLoss(output_dim, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs,
      student_temp, center_momentum)`` on the teacher (global views) and student (all views) outputs; pairs of the
      same view are excluded, and the centre (``criterion.center``, a buffer: checkpoint the loss with the network)
      is updated at every call (lightly does so in evaluation too).

    The DINO teacher temperature warms up linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over
    ``warmup_teacher_temp_epochs`` epochs; lightly needs the epoch for that, which the network cannot know. It is
    read from the attribute ``epoch`` (0-based), which :class:`~monai_osteo.handlers.TeacherMomentumHandler` sets
    on every ``EPOCH_STARTED`` (or set it yourself). While ``epoch`` is None, ``teacher_temp`` is used (lightly's
    behaviour without an epoch), with a warning if a warm-up was configured.

    A plain ``torch.nn.Module`` returning the mean, like lightly's losses (no ``reduction``: DINO's centre update
    is defined on the batch).

    Args:
        method: ``"byol"``, ``"simsiam"`` or ``"dino"``; must match the network.
        output_dim: DINO output width K (the network's ``output_dim``).
        warmup_teacher_temp: DINO teacher temperature at epoch 0.
        teacher_temp: DINO teacher temperature after the warm-up.
        warmup_teacher_temp_epochs: DINO warm-up length in epochs (0: none).
        student_temp: DINO student temperature.
        center_momentum: DINO momentum of the teacher centre.
    """

    def __init__(
        self,
        method: str = "byol",
        output_dim: int = 65536,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 30,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
        if warmup_teacher_temp_epochs < 0:
            raise ValueError(f"warmup_teacher_temp_epochs must be >= 0, got {warmup_teacher_temp_epochs!r}.")
        self.method = method
        self.epoch: int | None = None
        self._warned = False
        self.criterion: torch.nn.Module
        if method == "dino":
            self.output_dim = output_dim
            self.warmup = warmup_teacher_temp_epochs > 0 and warmup_teacher_temp != teacher_temp
            self.criterion = DINOLoss(
                output_dim, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, student_temp, center_momentum
            )
        else:
            self.criterion = NegativeCosineSimilarity()

    def forward(self, out: dict, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Compute the loss.

        Args:
            out: ``EncoderSSLNetwork`` output: ``"predictions"``, ``V`` tensors (B, P), and ``"targets"``, ``G <= V``
                tensors (B, P) (BYOL/SimSiam); or ``"student"``, ``V`` tensors (B, K), and ``"teacher"``, ``G <= V``
                tensors (B, K) (DINO). Target/teacher view ``i`` is the same image as prediction/student view ``i``.
            labels: ignored (accepted for ``MultiViewSSLTrainer``).

        Returns:
            Scalar loss.
        """
        online, target = ("student", "teacher") if self.method == "dino" else ("predictions", "targets")
        if online not in out or target not in out:
            raise ValueError(
                f"out must hold {online!r} and {target!r} (keys {sorted(out)!r}); build "
                f"EncoderSSLNetwork with method={self.method!r}."
            )
        preds, targets = list(out[online]), list(out[target])
        if len(preds) < 2 or not 1 <= len(targets) <= len(preds):
            raise ValueError(
                f"out[{online!r}] must hold >= 2 views and out[{target!r}] between 1 and as many, got "
                f"{len(preds)} and {len(targets)}."
            )
        if self.method != "dino":
            losses = [
                self.criterion(preds[j], targets[i]) for i in range(len(targets)) for j in range(len(preds)) if j != i
            ]
            return torch.stack(losses).mean()
        if targets[0].shape[-1] != self.output_dim:
            raise ValueError(
                f"the DINO outputs have {targets[0].shape[-1]} dimensions but output_dim is "
                f"{self.output_dim}: set PairSSLLoss(output_dim=...) to the network's output_dim."
            )
        if self.epoch is None and self.warmup and self.training and not self._warned:
            warnings.warn(
                "PairSSLLoss('dino').epoch is None: the teacher temperature warm-up is skipped; attach "
                "TeacherMomentumHandler (it sets loss.epoch) or set loss.epoch yourself.",
                stacklevel=2,
            )
            self._warned = True
        return self.criterion(targets, preds, epoch=self.epoch)
