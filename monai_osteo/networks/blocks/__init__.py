"""Network blocks: Gaussian latents with feature-wise modulation, mixture router, device-aware MoE head."""

from monai_osteo.networks.blocks.latent import FeatureWiseModulation, GaussianLatent
from monai_osteo.networks.blocks.moe import DeviceMoEHead
from monai_osteo.networks.blocks.router import MixtureRouter

__all__ = ["DeviceMoEHead", "FeatureWiseModulation", "GaussianLatent", "MixtureRouter"]
