"""Networks: the multi-decoder OT U-Net of the hand paper and its deterministic mixture-mean export."""

from monai_osteo.networks.nets.ot_unet import MixtureMeanUNet, MultiDecoderOTUNet

__all__ = ["MixtureMeanUNet", "MultiDecoderOTUNet"]
