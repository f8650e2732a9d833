"""Networks: the multi-decoder OT U-Net of the hand paper and its deterministic mixture-mean export; the
self-supervised ResNet network (SimCLR/SupCon/SwaV/VICReg heads, multi-crop), the BYOL/SimSiam/DINO network around
the U-Net's ResNet encoder (MedSASS baselines) and the bone classifier; the vertebral osteoporosis network (ResNet
encoder + device-aware mixture-of-experts multi-task head)."""

from monai_osteo.networks.nets.bone_classifier import BoneClassifier
from monai_osteo.networks.nets.cross_teaching import CrossTeachingPair
from monai_osteo.networks.nets.linear_probe import LinearProbe
from monai_osteo.networks.nets.momentum_ssl import EncoderSSLNetwork
from monai_osteo.networks.nets.ot_unet import MixtureMeanUNet, MultiDecoderOTUNet
from monai_osteo.networks.nets.resnet_unet import ResNetEncoder, ResNetUNet
from monai_osteo.networks.nets.s4mi_backbones import S4MIClassifier, s4mi_classifier
from monai_osteo.networks.nets.s4mi_ssl import CASSNetwork, DINONetwork
from monai_osteo.networks.nets.ssl_backbone import build_resnet_backbone
from monai_osteo.networks.nets.ssl_net import SSLNetwork
from monai_osteo.networks.nets.stage_pooling import FEATURE_POOLINGS, StagePooledResNet, pooled_encoder
from monai_osteo.networks.nets.vertebra_net import VertebraNet, split_vertebra_output

__all__ = [
    "BoneClassifier",
    "FEATURE_POOLINGS",
    "CASSNetwork",
    "CrossTeachingPair",
    "DINONetwork",
    "EncoderSSLNetwork",
    "LinearProbe",
    "MixtureMeanUNet",
    "MultiDecoderOTUNet",
    "ResNetEncoder",
    "ResNetUNet",
    "S4MIClassifier",
    "SSLNetwork",
    "StagePooledResNet",
    "VertebraNet",
    "build_resnet_backbone",
    "pooled_encoder",
    "s4mi_classifier",
    "split_vertebra_output",
]
