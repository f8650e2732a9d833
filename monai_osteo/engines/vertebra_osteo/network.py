"""Build the vertebra network of a stage: random init, a pre-trained encoder (TP-SwAV / crop-SwAV) or a model."""

from __future__ import annotations

import logging
import os

import torch

from monai_osteo.networks.nets import VertebraNet

__all__ = ["prepare_network"]

logger = logging.getLogger("monai_osteo.engines")


def prepare_network(net: VertebraNet, init_checkpoint: str | os.PathLike | None = None,
                    model_checkpoint: str | os.PathLike | None = None) -> VertebraNet:
    """``net`` with its encoder loaded from a pre-training checkpoint and/or all weights from a model checkpoint.

    Args:
        net: the ``VertebraNet`` of the config's ``network_def``.
        init_checkpoint: a ``pretrain.json`` checkpoint (``model.pt``: ``SSLNetwork`` weights): its ``backbone.*``
            weights are loaded into the encoder (strict on those keys); the head stays randomly initialised.
            ``None``: training from scratch.
        model_checkpoint: a fine-tuned ``model.pt`` (``{"model": state_dict}`` or a state dict), loaded strictly.
            A missing file is an error naming it (evaluate after the fine-tuning stage).
    """
    if init_checkpoint is not None:
        if not os.path.isfile(init_checkpoint):
            raise FileNotFoundError(f"{init_checkpoint}: pre-trained encoder not found; run its pretrain stage first "
                                    "(train.json runs the stages in order) or set init_checkpoint to null (scratch).")
        keys = net.load_encoder(init_checkpoint)
        logger.info("encoder initialised from %s (%d tensors)", os.path.basename(str(init_checkpoint)), len(keys))
    if model_checkpoint is not None:
        if not os.path.isfile(model_checkpoint):
            raise FileNotFoundError(f"{model_checkpoint}: fine-tuned model not found; run the row's finetune stage "
                                    "first, or point model_checkpoint at a model.pt.")
        state = torch.load(model_checkpoint, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        net.load_state_dict(state, strict=True)
    return net
