"""Cross-teaching between a CNN U-Net and a Swin U-Net on partly labelled batches (S4MI semi-supervised segmentation).

Each batch holds ``labeled_batch_size`` labelled images first, then unlabelled ones (the order a two-stream batch
sampler gives). With ``out1, out2 = network(images)`` (a :class:`~monai_osteo.networks.nets.cross_teaching.
CrossTeachingPair`), lb = ``labeled_batch_size`` and w = ``engine.state.consistency_weight``:

- ``loss1 = sup(out1[:lb], y)``, ``loss2 = sup(out2[:lb], y)``: the supervised loss, S4MI ``0.5 (CE_w + Dice)``;
- ``pseudo1 = argmax(softmax(out1[lb:]))``, ``pseudo2 = argmax(softmax(out2[lb:]))``, detached;
- ``ps1 = pseudo(out1[lb:], pseudo2)``, ``ps2 = pseudo(out2[lb:], pseudo1)``: Dice against the other network's
  hard labels;
- ``loss = loss1 + w ps1 + loss2 + w ps2``, one backward and one optimiser step over both networks (equivalent to
  the code's two Adams, see the pair's module).

Only ``_iteration`` of MONAI's ``SupervisedTrainer`` is overridden.

- [0] Singh et al., 2024, Shifting to machine supervision: annotation-efficient semi and self-supervised learning
  for automatic medical image segmentation and classification (Sci. Rep.), §Semi-supervised approach; code
  S4MI ``train_CT_between_cnn_transformer_2D.py``.
- [1] Luo et al., 2022, Semi-supervised medical image segmentation via cross teaching between CNN and Transformer
  (MIDL); SSL4MIS ``train_cross_teaching_between_cnn_transformer_2D.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.losses import DiceLoss
from monai.utils import CommonKeys as Keys

from monai_osteo.engines.utils import optimisation_step

__all__ = ["CrossTeachingTrainer"]


class CrossTeachingTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` of a ``CrossTeachingPair`` with cross pseudo-supervision on the unlabelled images.

    Args:
        labeled_batch_size: number lb >= 1 of labelled images at the start of every batch; the rest are unlabelled.
        pseudo_loss_function: ``f(logits (U, K, H, W), pseudo_labels (U, 1, H, W)) -> scalar``; default the SSL4MIS
            Dice, MONAI ``DiceLoss(softmax=True, to_onehot_y=True, squared_pred=True, batch=True)``.
        image_key: batch key of the images (B, C, H, W).
        label_key: batch key of the label maps, (B, 1, H, W) or (B, H, W) (only the first lb are read: the
            unlabelled images may carry placeholder labels), or only the lb labelled maps.
        *args, **kwargs: as ``monai.engines.SupervisedTrainer``; ``network`` is the pair, ``loss_function`` the
            supervised loss ``f(logits (lb, K, H, W), labels (lb, 1, H, W))``, e.g. MONAI ``DiceCELoss(softmax=True,
            to_onehot_y=True, squared_pred=True, batch=True, lambda_dice=0.5, lambda_ce=0.5)`` (its ``weight`` also
            weights the Dice term, unlike S4MI's, which weights the cross-entropy only); ``decollate`` defaults to
            False.

    The consistency weight w is read from ``engine.state.consistency_weight``: attach a
    :class:`~monai_osteo.handlers.consistency_rampup.ConsistencyRampupHandler`. A batch without unlabelled images
    (lb == B) has ``ps1 = ps2 = 0``; the S4MI bundle avoids it at 100 % labels by drawing the second stream from all
    training images with their labels ignored (the paper's 15 + 1 batch).

    Outputs per iteration: ``loss`` (detached tensor), ``loss1``, ``loss2``, ``ps1``, ``ps2``, ``consistency_weight``
    (floats), and for train metrics ``image``, ``pred`` (net1 logits) and ``label`` of the labelled images.
    """

    def __init__(self, *args, labeled_batch_size: int, pseudo_loss_function: Callable | None = None,
                 image_key: str = "image", label_key: str = "label", **kwargs) -> None:
        if int(labeled_batch_size) != labeled_batch_size or labeled_batch_size < 1:
            raise ValueError(f"labeled_batch_size must be an integer >= 1, got {labeled_batch_size!r}.")
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        self.labeled_batch_size = int(labeled_batch_size)
        self.pseudo_loss_function = pseudo_loss_function if pseudo_loss_function is not None else DiceLoss(
            softmax=True, to_onehot_y=True, squared_pred=True, batch=True)
        self.image_key, self.label_key = image_key, label_key
        self.add_event_handler(Events.EPOCH_STARTED, self._set_batch_sampler_epoch)

    @staticmethod
    def _set_batch_sampler_epoch(engine: CrossTeachingTrainer) -> None:
        """Reshuffle the two streams every epoch: MONAI's ``Workflow`` calls ``set_epoch`` on a ``DistributedSampler``
        only, not on a ``batch_sampler`` such as :class:`~monai_osteo.data.samplers.TwoStreamBatchSampler`."""
        batch_sampler = getattr(engine.data_loader, "batch_sampler", None)
        if hasattr(batch_sampler, "set_epoch"):
            batch_sampler.set_epoch(engine.state.epoch)

    def _unpack(self, batchdata: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        for key in (self.image_key, self.label_key):
            if key not in batchdata:
                raise ValueError(f"batch must contain {key!r} (keys: {sorted(batchdata)}); set image_key/label_key.")
        dev, nb, lb = self.state.device, self.non_blocking, self.labeled_batch_size
        image = batchdata[self.image_key].to(dev, non_blocking=nb)
        label = torch.as_tensor(batchdata[self.label_key])
        shape = tuple(label.shape)
        if lb > image.shape[0]:
            raise ValueError(f"labeled_batch_size ({lb}) must be <= the batch size, got a batch of {image.shape[0]}; "
                             "check the batch sampler's labelled batch size or set drop_last.")
        if label.ndim == image.ndim - 1:
            label = label.unsqueeze(1)
        if label.ndim != image.ndim or label.shape[1] != 1 or label.shape[2:] != image.shape[2:]:
            raise ValueError(f"{self.label_key!r} must be (B, 1, *spatial) or (B, *spatial) matching the image "
                             f"{tuple(image.shape)}, got {shape}.")
        if label.shape[0] < lb:
            raise ValueError(f"{self.label_key!r} must hold at least labeled_batch_size={lb} maps, got {shape}; the "
                             "labelled images must come first in every batch.")
        label = label[:lb].to(dev, non_blocking=nb)
        return image, label

    def _iteration(self, engine: CrossTeachingTrainer, batchdata: dict) -> dict:
        image, label = engine._unpack(batchdata)
        w = getattr(engine.state, "consistency_weight", None)
        if w is None:
            raise ValueError("engine.state.consistency_weight is not set; attach "
                             "monai_osteo.handlers.consistency_rampup.ConsistencyRampupHandler to the trainer "
                             "(mode='constant' for a fixed weight).")
        lb = engine.labeled_batch_size
        engine.state.output = {Keys.IMAGE: image[:lb], Keys.LABEL: label, "consistency_weight": float(w)}
        terms: dict[str, torch.Tensor] = {}

        def _forward() -> None:
            out1, out2 = engine.network(image)
            engine.state.output[Keys.PRED] = out1[:lb]
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            terms["loss1"] = engine.loss_function(out1[:lb], label)
            terms["loss2"] = engine.loss_function(out2[:lb], label)
            if image.shape[0] > lb:
                pseudo1 = torch.softmax(out1[lb:].detach(), dim=1).argmax(dim=1, keepdim=True)
                pseudo2 = torch.softmax(out2[lb:].detach(), dim=1).argmax(dim=1, keepdim=True)
                terms["ps1"] = engine.pseudo_loss_function(out1[lb:], pseudo2)
                terms["ps2"] = engine.pseudo_loss_function(out2[lb:], pseudo1)
            else:
                terms["ps1"] = terms["ps2"] = terms["loss1"].new_zeros(())
            engine.state.output[Keys.LOSS] = (terms["loss1"] + w * terms["ps1"]) + (terms["loss2"] + w * terms["ps2"])
            engine.fire_event(IterationEvents.LOSS_COMPLETED)

        optimisation_step(engine, _forward)
        engine.state.output[Keys.LOSS] = engine.state.output[Keys.LOSS].detach()
        engine.state.output[Keys.PRED] = engine.state.output[Keys.PRED].detach()
        engine.state.output.update({k: float(v.detach()) for k, v in terms.items()})
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
