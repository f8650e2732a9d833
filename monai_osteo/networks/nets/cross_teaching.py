"""The CNN / Swin network pair of S4MI's cross-teaching segmentation, and the two MONAI networks it uses.

One module holds both networks so that MONAI's ``SupervisedTrainer``, ``CheckpointSaver``/``CheckpointLoader`` and
LR-scheduler handlers work unchanged. The authors' code steps two ``Adam`` optimisers with identical settings, one
per network; a single ``Adam`` over the parameters of both is the same update, because Adam's moments, bias
correction and (L2) weight decay are per-parameter and the loss is one sum (``loss = model1_loss + model2_loss``,
one ``backward``). A shared LR schedule likewise equals two identical schedules. Not equivalent: anything that
couples parameters across the two networks, such as gradient-norm clipping over all parameters (clip each network
separately if needed) or different hyper-parameters per network (use two parameter groups).

- [0] Singh et al., 2024, Shifting to machine supervision: annotation-efficient semi and self-supervised learning
  for automatic medical image segmentation and classification (Sci. Rep.), §Semi-supervised approach.
- [1] Luo et al., 2022, Semi-supervised medical image segmentation via cross teaching between CNN and Transformer
  (MIDL); SSL4MIS ``train_cross_teaching_between_cnn_transformer_2D.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import BasicUNet, SwinUNETR

__all__ = ["CrossTeachingPair", "s4mi_swin_unet", "s4mi_unet"]


class CrossTeachingPair(torch.nn.Module):
    """Two segmentation networks run on the same batch.

    Args:
        net1: the CNN U-Net (e.g. :func:`s4mi_unet`), maps (B, C, H, W) to logits (B, K, H, W).
        net2: the Swin U-Net (e.g. :func:`s4mi_swin_unet`), same input and output shapes.

    Validate or deploy one network alone through the submodule (``"$@network.net1"`` in a bundle config); a
    checkpoint of the pair stores both under the prefixes ``net1.`` and ``net2.``.
    """

    def __init__(self, net1: torch.nn.Module, net2: torch.nn.Module) -> None:
        super().__init__()
        for name, net in (("net1", net1), ("net2", net2)):
            if not isinstance(net, torch.nn.Module):
                raise ValueError(f"{name} must be a torch.nn.Module, got {type(net)!r}.")
        self.net1, self.net2 = net1, net2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            x: images (B, C, H, W).

        Returns:
            ``(logits1, logits2)``, each (B, K, H, W): the outputs of ``net1`` and ``net2``.
        """
        return self.net1(x), self.net2(x)


def s4mi_unet(in_channels: int, out_channels: int, features: Sequence[int] = (16, 32, 64, 128, 256, 16),
              dropout: float = 0.1) -> BasicUNet:
    """MONAI ``BasicUNet(spatial_dims=2)`` standing in for SSL4MIS' ``UNet`` (features 16–256, transposed-conv
    upsampling). SSL4MIS drops out 0.05–0.5 per level; ``BasicUNet`` takes one rate for all levels."""
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels, features=tuple(features),
                     dropout=dropout, upsample="deconv")


def s4mi_swin_unet(in_channels: int, out_channels: int, img_size: int | Sequence[int] | None = None,
                   feature_size: int = 48, use_v2: bool = True, **kwargs) -> SwinUNETR:
    """MONAI ``SwinUNETR(spatial_dims=2)`` standing in for Cao et al.'s Swin-Unet (not the same architecture: Swin
    encoder with a CNN decoder, patch 2, window 7; randomly initialised).

    Args:
        in_channels, out_channels: image channels and classes.
        img_size: optional training size, only checked here: MONAI 1.6 ``SwinUNETR`` no longer takes it, and every
            spatial size must be divisible by 32 (patch 2 to the 5th power).
        feature_size: embedding width, a multiple of 12 (48 = the MONAI default of the 2-D Swin-UNETR).
        use_v2: residual convolution block at the start of each Swin stage (Swin-UNETR v2).
        **kwargs: any other ``SwinUNETR`` argument (``depths``, ``num_heads``, ``dropout_path_rate``, ...).
    """
    if img_size is not None:
        sizes = [int(img_size)] * 2 if isinstance(img_size, int) else [int(s) for s in img_size]
        if len(sizes) != 2 or any(s <= 0 or s % 32 for s in sizes):
            raise ValueError(f"img_size must be two positive sizes divisible by 32, got {img_size!r}; resize or pad "
                             "the images (e.g. 224 or 256).")
    return SwinUNETR(in_channels=in_channels, out_channels=out_channels, feature_size=feature_size,
                     spatial_dims=2, use_v2=use_v2, **kwargs)
