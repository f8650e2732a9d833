"""Module-specific Gaussian latents and the feature-wise affine modulation they drive (hand paper, Fig. 2).

Each decoder module k owns a latent ``z_k ~ N(mu_k, sigma_k^2 I)`` of dimension L with learnable ``mu_k`` and
``log sigma_k`` (reparameterised: ``z = mu + sigma * eps``). A latent modulates the decoded feature map
``u_d`` (F channels) channel-wise, ``u_bar = (W_s z) * (u_d + W_b z)``, so one decoded map and S latents give
S hypotheses by broadcasting: the decoder runs once per module, never once per sample.

Written here because MONAI has no latent-conditioned feature modulation block; ``torch.nn.Linear`` does the maths.

- [0] Hand X-ray osteoporosis journal paper (``papers/hand_xray_osteoporosis_journal.txt``), §"Uncertainty-aware
  segmentation with modularity" (feature-wise modulation, Eq. 1).
- [1] Perez et al., 2018, FiLM: visual reasoning with a general conditioning layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FeatureWiseModulation", "GaussianLatent"]


class GaussianLatent(nn.Module):
    """K learnable isotropic-per-dimension Gaussians ``N(mu_k, diag(sigma_k^2))``, sampled by reparameterisation.

    Args:
        num_modules: K, the number of decoder modules (one Gaussian each).
        latent_dim: L, the latent dimension (>= 1).
        init_mean_std: ``mu_k`` is initialised from ``N(0, init_mean_std^2)`` so that the modules start apart
            (with a shared decoder the latents are all that tells the modules apart).
        init_sigma: initial ``sigma_k`` (``log sigma_k`` is the parameter, so sigma stays positive).
    """

    def __init__(self, num_modules: int, latent_dim: int, init_mean_std: float = 1.0, init_sigma: float = 1.0):
        super().__init__()
        if num_modules < 1 or latent_dim < 1:
            raise ValueError(f"num_modules and latent_dim must be >= 1, got {num_modules!r} and {latent_dim!r}.")
        if init_sigma <= 0:
            raise ValueError(f"init_sigma must be > 0, got {init_sigma!r}.")
        self.mu = nn.Parameter(torch.randn(num_modules, latent_dim) * init_mean_std)
        self.log_sigma = nn.Parameter(torch.full((num_modules, latent_dim), math.log(init_sigma)))

    def forward(self, batch_size: int, num_samples: int, deterministic: bool = False) -> torch.Tensor:
        """Draw S latents per module and image.

        Args:
            batch_size: B.
            num_samples: S.
            deterministic: return ``mu_k`` for every sample instead of drawing.

        Returns:
            (B, K, S, L) latents, on the device and in the dtype of the parameters.
        """
        k, dim = self.mu.shape[0], self.mu.shape[1]
        mu = self.mu[None, :, None, :]
        if deterministic:
            return mu.expand(batch_size, k, num_samples, dim)
        eps = torch.randn([batch_size, k, num_samples, dim], device=self.mu.device, dtype=self.mu.dtype)
        return mu + self.log_sigma.exp()[None, :, None, :] * eps


class FeatureWiseModulation(nn.Module):
    """``u_bar = (W_s z) * (u + W_b z)`` with ``W_s z = 1 + linear_s(z)``: per-channel scale and shift from a latent.

    The scale is parameterised as ``1 + linear_s(z)`` so that it starts near 1: both bias-free linear maps are
    initialised with weights ``N(0, init_std^2 / L)``, so that for ``z ~ N(0, I)`` the scale is ``1 +- init_std``
    and the shift ``+- init_std`` per channel at initialisation: every hypothesis starts close to the decoded map
    yet distinct (the paper's ``W_s z`` equals ``1 + linear_s(z)`` when ``z`` carries a constant 1, so nothing is
    lost).

    Args:
        latent_dim: L.
        num_features: F, channels of the decoded feature map.
        init_std: per-channel spread of scale and shift at initialisation for a standard-normal latent.
    """

    def __init__(self, latent_dim: int, num_features: int, init_std: float = 0.1):
        super().__init__()
        self.scale = nn.Linear(latent_dim, num_features, bias=False)
        self.shift = nn.Linear(latent_dim, num_features, bias=False)
        for layer in (self.scale, self.shift):
            nn.init.normal_(layer.weight, std=init_std / math.sqrt(latent_dim))

    def forward(self, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Modulate one decoded map with S latents.

        Args:
            u: (B, F, *spatial) decoded feature map.
            z: (B, S, L) latents.

        Returns:
            (B, S, F, *spatial) modulated maps, one per latent.
        """
        scale = 1.0 + self.scale(z)
        shift = self.shift(z)
        for _ in range(u.dim() - 2):
            scale = scale.unsqueeze(-1)
            shift = shift.unsqueeze(-1)
        return scale * (u.unsqueeze(1) + shift)
