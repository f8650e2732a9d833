"""Networks: the multi-decoder OT U-Net of the hand paper and its deterministic mixture-mean export; the
self-supervised ResNet network (SimCLR/SupCon/SwaV/VICReg heads, multi-crop) and the bone classifier."""

from monai_osteo.networks.nets.bone_classifier import BoneClassifier
from monai_osteo.networks.nets.linear_probe import LinearProbe
from monai_osteo.networks.nets.ot_unet import MixtureMeanUNet, MultiDecoderOTUNet
from monai_osteo.networks.nets.ssl_backbone import build_resnet_backbone
from monai_osteo.networks.nets.ssl_net import SSLNetwork

__all__ = ["BoneClassifier", "LinearProbe", "MixtureMeanUNet", "MultiDecoderOTUNet", "SSLNetwork",
           "build_resnet_backbone"]
