"""Network blocks: Gaussian latents with feature-wise modulation, mixture router."""

from monai_osteo.networks.blocks.latent import FeatureWiseModulation, GaussianLatent
from monai_osteo.networks.blocks.router import MixtureRouter

__all__ = ["FeatureWiseModulation", "GaussianLatent", "MixtureRouter"]
