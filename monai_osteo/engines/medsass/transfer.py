"""Transfer of pre-trained weights into the MedSASS U-Net: scratch, encoder only ("E") or the whole U-Net ("E+D").

- [0] Singh & Cirrone, MedSASS, §3.3 (E: "we only keep the encoder and discard everything else"; E+D: the
  pre-trained U-Net "can then be used directly for segmentation").
"""

from __future__ import annotations

import logging
import os

import torch

from monai_osteo.networks.nets.resnet_unet import ResNetUNet

__all__ = ["TRANSFER_MODES", "load_checkpoint_state", "prepare_network"]

logger = logging.getLogger("monai_osteo.engines.medsass")
TRANSFER_MODES = ("scratch", "encoder", "full")


def load_checkpoint_state(path: str | os.PathLike, key: str = "model") -> dict[str, torch.Tensor]:
    """State dict in a checkpoint file: ``checkpoint[key]`` when present, else the file's dict itself (MONAI's
    ``CheckpointSaver`` stores a single object's state dict unwrapped). Loaded with ``weights_only=True``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found; run the pre-training stage first, or set "
                                "init_checkpoint to an existing file (or transfer to 'scratch').")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get(key, ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state-dict checkpoint (expected a dict, or a dict with {key!r}).")
    return state


def prepare_network(network: ResNetUNet, transfer: str = "scratch", checkpoint: str | os.PathLike | None = None,
                    freeze_encoder: bool = False) -> ResNetUNet:
    """Initialise ``network`` for a protocol and return it.

    Args:
        network: the U-Net to train or evaluate.
        transfer: ``"scratch"`` (keep the random initialisation), ``"encoder"`` (load the encoder of
            ``checkpoint``: a U-Net or a self-supervised network whose encoder is stored under ``encoder.``; the
            decoder stays random), ``"full"`` (load the whole U-Net from ``checkpoint``).
        checkpoint: file written by a pre-training stage (``model.pt``).
        freeze_encoder: keep the encoder's weights and batch-norm statistics fixed (frozen-encoder protocol).
    """
    if transfer not in TRANSFER_MODES:
        raise ValueError(f"transfer must be one of {TRANSFER_MODES}, got {transfer!r}.")
    if transfer != "scratch":
        if checkpoint is None:
            raise ValueError(f"transfer={transfer!r} needs init_checkpoint (the pre-trained model.pt).")
        state = load_checkpoint_state(checkpoint)
        if transfer == "encoder":
            network.load_encoder(state, prefix="encoder.")
        else:
            network.load_state_dict(state)
        logger.info("initialised from %s (%s)", os.path.basename(str(checkpoint)), transfer)
    network.freeze_encoder(freeze_encoder)
    return network
