"""Trainer and evaluator of the multi-decoder OT U-Net on multi-annotator masks.

Batches are dictionaries with the radiograph (B, 1, H, W), the M annotator label maps (B, M, H, W) and their
weights beta (B, M). The trainer overrides only ``_iteration`` of MONAI's ``SupervisedTrainer``; extra outputs
(transport cost, KL term, gamma) go to ``engine.state.output`` under named keys.

- [0] hand_xray_osteoporosis_journal, §"Uncertainty-aware segmentation", Eqs. 1–9.
"""

from __future__ import annotations

import inspect

import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

from monai_osteo.engines.utils import optimisation_step

__all__ = ["OTSegmentationEvaluator", "OTSegmentationTrainer", "dice_output_transform", "ged_output_transform"]


def _unpack(engine, batchdata: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if batchdata is None:
        raise ValueError("Must provide batch data for current iteration.")
    for key in (engine.image_key, engine.masks_key):
        if key not in batchdata:
            raise ValueError(f"batch must contain {key!r} (keys: {sorted(batchdata)}); set image_key/masks_key.")
    dev, nb = engine.state.device, engine.non_blocking
    image = batchdata[engine.image_key].to(dev, non_blocking=nb)
    masks = batchdata[engine.masks_key].to(dev, non_blocking=nb).long()
    if masks.ndim != image.ndim or masks.shape[2:] != image.shape[2:]:
        raise ValueError(f"{engine.masks_key!r} must be (B, M, *spatial) matching the image {tuple(image.shape)}, "
                         f"got {tuple(masks.shape)}; stack the annotator masks with LoadAnnotatorMasksd.")
    weights = batchdata.get(engine.weights_key)
    weights = None if weights is None else torch.as_tensor(weights).to(dev, non_blocking=nb).float()
    return image, masks, weights


class OTSegmentationTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` for ``MultiDecoderOTUNet`` + ``OTSegmentationLoss`` on multi-annotator batches.

    Args:
        image_key: batch key of the radiographs (B, C, H, W).
        masks_key: batch key of the annotator label maps (B, M, H, W).
        weights_key: batch key of the annotator weights beta (B, M); missing = equal weights.
        *args, **kwargs: as ``monai.engines.SupervisedTrainer`` (network, optimizer, loss_function, ...);
            ``decollate`` defaults to False: the outputs are batch tensors, which the metrics below expect.

    Outputs per iteration: ``image``, ``label`` (masks), ``pred`` (mixture-mean probabilities), ``loss``,
    ``cost`` (transport term), ``kl`` (router term), ``gamma``.
    """

    def __init__(self, *args, image_key: str = "image", masks_key: str = "masks", weights_key: str = "mask_weights",
                 **kwargs) -> None:
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        self.image_key, self.masks_key, self.weights_key = image_key, masks_key, weights_key
        # the uncertainty maps are not needed for the loss: skip them when the network allows it
        accepts = "with_uncertainty" in inspect.signature(self.network.forward).parameters
        self._forward_kwargs = {"with_uncertainty": False} if accepts else {}

    def _iteration(self, engine: OTSegmentationTrainer, batchdata: dict) -> dict:
        image, masks, weights = _unpack(engine, batchdata)
        engine.state.output = {Keys.IMAGE: image, Keys.LABEL: masks}

        def _forward() -> None:
            out = engine.network(image, **engine._forward_kwargs)
            engine.state.output[Keys.PRED] = out["mean_prob"]
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            engine.state.output[Keys.LOSS] = engine.loss_function(out["logits"], out["alpha"], masks, weights).mean()
            engine.fire_event(IterationEvents.LOSS_COMPLETED)

        optimisation_step(engine, _forward)
        last = getattr(engine.loss_function, "last", {}) or {}
        for key in ("cost", "kl"):
            if key in last:
                engine.state.output[key] = float(torch.as_tensor(last[key]).mean())
        engine.state.output["gamma"] = float(getattr(engine.loss_function, "gamma", 1.0))
        engine.fire_event(IterationEvents.MODEL_COMPLETED)  # MONAI decollates the output here if asked to
        return engine.state.output


class OTSegmentationEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` producing what the consensus-Dice and GED metrics need.

    Args:
        num_samples: hypotheses per decoder module at evaluation (None = the network's own S).
        image_key, masks_key, weights_key: as :class:`OTSegmentationTrainer`.
        *args, **kwargs: as ``monai.engines.SupervisedEvaluator`` (``decollate`` defaults to False).

    Outputs per iteration: ``image``, ``label`` (masks), ``weights``, ``pred`` (mixture-mean probabilities
    (B, C, H, W)), ``samples`` (hypothesis label maps (B, K*S, H, W)), ``alpha`` (B, K*S), ``uncertainty``.
    """

    def __init__(self, *args, num_samples: int | None = None, image_key: str = "image", masks_key: str = "masks",
                 weights_key: str = "mask_weights", **kwargs) -> None:
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        self.num_samples = num_samples
        self.image_key, self.masks_key, self.weights_key = image_key, masks_key, weights_key

    def _iteration(self, engine: OTSegmentationEvaluator, batchdata: dict) -> dict:
        image, masks, weights = _unpack(engine, batchdata)
        engine.network.eval()
        with engine.mode(engine.network):
            kwargs = {} if self.num_samples is None else {"num_samples": self.num_samples}
            if engine.amp:
                with torch.autocast("cuda", **engine.amp_kwargs):
                    out = engine.network(image, **kwargs)
            else:
                out = engine.network(image, **kwargs)
        b = image.shape[0]
        engine.state.output = {
            Keys.IMAGE: image,
            Keys.LABEL: masks,
            "weights": weights,
            Keys.PRED: out["mean_prob"],
            "samples": out["logits"].argmax(3).reshape(b, -1, *image.shape[2:]),
            "alpha": out["alpha"].reshape(b, -1),
            "uncertainty": out.get("uncertainty"),
        }
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output


def _batched(output, key: str):
    """``output[key]`` as a batch tensor, also when the engine decollated the output into a list of dicts."""
    if isinstance(output, dict):
        return output.get(key)
    items = [o.get(key) for o in output]
    return None if items[0] is None else torch.stack([torch.as_tensor(i) for i in items])


def dice_output_transform(output) -> tuple:
    """``IgniteMetricHandler`` output transform for :class:`~monai_osteo.metrics.ConsensusDiceMetric`."""
    return _batched(output, Keys.PRED), {"masks": _batched(output, Keys.LABEL), "weights": _batched(output, "weights")}


def ged_output_transform(output) -> tuple:
    """``IgniteMetricHandler`` output transform for :class:`~monai_osteo.metrics.GEDMetric`."""
    y_pred = {"samples": _batched(output, "samples"), "alpha": _batched(output, "alpha")}
    return y_pred, {"masks": _batched(output, Keys.LABEL), "weights": _batched(output, "weights")}
