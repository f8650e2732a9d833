"""Multi-view self-supervised trainer: a ``SupervisedTrainer`` whose batches are lists of augmented views.

Batches are dictionaries with ``global_key`` and ``local_key`` lists of (B, C, h, w) views (the layout
:class:`~monai_osteo.transforms.RandConstrainedMultiCropd` and a MONAI ``DataLoader`` give) and an optional
``label_key`` (B,) (SupCon's classes, negative = unlabelled). The network maps the list of views to a dict
(:class:`~monai_osteo.networks.nets.SSLNetwork`), the loss maps that dict and the labels to a scalar
(:class:`~monai_osteo.losses.MultiCropSSLLoss`). Only ``_iteration`` is overridden.

- [0] hand_xray_osteoporosis_journal, §"Self-supervised pre-training" (Fig. 4).
"""

from __future__ import annotations

import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

from monai_osteo.engines.utils import optimisation_step

__all__ = ["MultiViewSSLTrainer"]


class MultiViewSSLTrainer(SupervisedTrainer):
    """Trainer of multi-crop self-supervised methods (SimCLR, SupCon, SwAV, VICReg).

    Args:
        global_key: batch key of the list of global views.
        local_key: batch key of the list of local views (may be absent: two-view methods).
        label_key: batch key of the labels passed to the loss (``None``: never).
        *args, **kwargs: as ``monai.engines.SupervisedTrainer``; ``decollate`` defaults to False.

    Outputs per iteration: ``loss`` and ``views`` (number of views).
    """

    def __init__(self, *args, global_key: str = "image_global", local_key: str = "image_local",
                 label_key: str | None = "label", **kwargs) -> None:
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        self.global_key, self.local_key, self.label_key = global_key, local_key, label_key
        self.add_event_handler(Events.EPOCH_STARTED, self._set_batch_sampler_epoch)

    @staticmethod
    def _set_batch_sampler_epoch(engine: MultiViewSSLTrainer) -> None:
        """Reshuffle a seeded batch sampler every epoch (e.g. :class:`~monai_osteo.data.GroupedBatchSampler`):
        MONAI's ``Workflow`` calls ``set_epoch`` on a ``DistributedSampler`` only, not on a ``batch_sampler``."""
        batch_sampler = getattr(engine.data_loader, "batch_sampler", None)
        if hasattr(batch_sampler, "set_epoch"):
            batch_sampler.set_epoch(engine.state.epoch)

    def _iteration(self, engine: MultiViewSSLTrainer, batchdata: dict) -> dict:
        if batchdata is None or engine.global_key not in batchdata:
            raise ValueError(f"batch must contain the list of global views {engine.global_key!r}, got keys "
                             f"{sorted(batchdata or {})}; build it with RandConstrainedMultiCropd.")
        dev, nb = engine.state.device, engine.non_blocking
        views = list(batchdata[engine.global_key]) + list(batchdata.get(engine.local_key, []))
        views = [v.to(dev, non_blocking=nb) for v in views]
        labels = None
        if engine.label_key is not None and engine.label_key in batchdata:
            labels = torch.as_tensor(batchdata[engine.label_key]).to(dev, non_blocking=nb).long()
        engine.state.output = {"views": len(views)}

        def _forward() -> None:
            out = engine.network(views, step=engine.state.iteration - 1)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            engine.state.output[Keys.LOSS] = engine.loss_function(out, labels)
            engine.fire_event(IterationEvents.LOSS_COMPLETED)

        optimisation_step(engine, _forward)
        engine.state.output[Keys.LOSS] = engine.state.output[Keys.LOSS].detach()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
