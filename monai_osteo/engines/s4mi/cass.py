"""CASS pre-training trainer: one augmented image through a CNN and a ViT, cosine agreement of their outputs.

- [0] Singh, Sizikova & Cirrone, 2022, CASS: Cross Architectural Self-Supervision for Medical Image Analysis.
- [1] Singh et al., 2024, S4MI (Sci. Rep.), §Methods/Classification.
"""

from __future__ import annotations

import torch.nn.functional as F
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

from monai_osteo.engines.utils import optimisation_step

__all__ = ["CASSTrainer"]


class CASSTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` for :class:`~monai_osteo.networks.nets.s4mi_ssl.CASSNetwork` and
    :class:`~monai_osteo.losses.CASSLoss`; only ``_iteration`` is overridden.

    Each iteration takes the batch's ``image`` (B, C, H, W) through ``engine.prepare_batch`` (labels, if any, are
    ignored), feeds the **same** augmented image to both arms (as the CASS code: no second view),
    ``out = network(image)``, ``loss = loss_function(out["cnn"], out["vit"])``, and steps through
    :func:`~monai_osteo.engines.utils.optimisation_step` (zero_grad first: the CASS code never calls it).

    One optimiser over ``network.parameters()`` is identical to the CASS code's two Adams (one per arm) with equal
    settings: Adam, AdamW and SGD update each parameter from its own gradient and state only, so splitting the
    parameters between two optimisers with the same hyperparameters (and two identical schedulers) changes
    nothing. Use two param groups if the arms need different learning rates.

    Args:
        *args, **kwargs: as ``monai.engines.SupervisedTrainer``; ``decollate`` defaults to False.

    Outputs per iteration: ``loss`` (detached) and ``cosine`` (mean cosine similarity of the two outputs, detached).
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)

    def _iteration(self, engine: CASSTrainer, batchdata: dict) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        if isinstance(batchdata, dict) and Keys.IMAGE not in batchdata:
            raise ValueError(f"batch must hold the images under {str(Keys.IMAGE)!r}, got keys {sorted(batchdata)}.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        image = batch[0]
        engine.state.output = {}

        def _forward() -> None:
            out = engine.network(image)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            engine.state.output[Keys.LOSS] = engine.loss_function(out["cnn"], out["vit"])
            engine.state.output["cosine"] = F.cosine_similarity(out["cnn"], out["vit"], dim=-1).mean().detach()
            engine.fire_event(IterationEvents.LOSS_COMPLETED)

        optimisation_step(engine, _forward)
        engine.state.output[Keys.LOSS] = engine.state.output[Keys.LOSS].detach()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
