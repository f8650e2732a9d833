"""Multi-decoder stochastic U-Net of the hand paper (Eq. 1, Fig. 2) and its deterministic mixture-mean export.

A shared U-Net encoder (MONAI ``BasicUNet`` blocks: ``TwoConv``, ``Down``, ``UpCat``) maps the image to
``u_e``; K decoder modules turn the encoder features (with skip connections) into decoded maps ``u_d``; a
module-specific Gaussian latent modulates ``u_d`` feature-wise and three 1x1 convolutions give the logits of one
hypothesis; S latents per module give S hypotheses; a router on ``AvgPool(u_e)`` gives the mixture weights
``pi_k(x)``. The predictive distribution is ``q(y|x) = sum_k pi_k (1/S) sum_s delta(s_k^s)`` (Eq. 1), i.e. sample
``(k, s)`` has weight ``alpha_ks = pi_k / S`` (Eq. 2), the weights the OT loss transports.

- [0] Hand X-ray osteoporosis journal paper (``papers/hand_xray_osteoporosis_journal.txt``), §"Uncertainty-aware
  segmentation with modularity", Eqs. 1-2, Fig. 2; Table 5 (single-decoder ablation).
- [1] Gao et al., 2023, Modeling multimodal aleatoric uncertainty in segmentation with mixture of stochastic experts.
- [2] Ronneberger et al., 2015, U-Net: convolutional networks for biomedical image segmentation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn

from monai_osteo.networks.blocks.latent import FeatureWiseModulation, GaussianLatent
from monai_osteo.networks.blocks.router import MixtureRouter

__all__ = ["MixtureMeanUNet", "MultiDecoderOTUNet"]


class _Encoder(nn.Module):
    """``TwoConv`` then ``len(channels) - 1`` max-pool ``Down`` blocks; returns every level (skips + ``u_e``)."""

    def __init__(self, spatial_dims, in_channels, channels, act, norm, bias, dropout):
        super().__init__()
        self.stem = TwoConv(spatial_dims, in_channels, channels[0], act, norm, bias, dropout)
        self.downs = nn.ModuleList(
            Down(spatial_dims, c_in, c_out, act, norm, bias, dropout)
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats


class _Decoder(nn.Module):
    """``UpCat`` blocks from the deepest level back to full resolution; output has ``channels[0]`` features."""

    def __init__(self, spatial_dims, channels, act, norm, bias, dropout, upsample):
        super().__init__()
        self.ups = nn.ModuleList(
            UpCat(spatial_dims, channels[i], channels[i - 1], channels[i - 1], act, norm, bias, dropout, upsample)
            for i in range(len(channels) - 1, 0, -1)
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        n = len(feats)
        for i, up in enumerate(self.ups):
            x = up(x, feats[n - 2 - i])
        return x


class _DecoderModule(nn.Module):
    """One decoder module: decoder -> feature-wise modulation by S latents -> three 1x1 convolutions."""

    def __init__(self, spatial_dims, channels, out_channels, latent_dim, head_channels, act, norm, bias, dropout,
                 upsample, modulation_init_std):
        super().__init__()
        self.decoder = _Decoder(spatial_dims, channels, act, norm, bias, dropout, upsample)
        f2 = channels[0]
        self.modulation = FeatureWiseModulation(latent_dim, f2, modulation_init_std) if latent_dim > 0 else None
        self.head = nn.Sequential(
            Convolution(spatial_dims, f2, head_channels, kernel_size=1, act=act, norm=None, bias=bias),
            Convolution(spatial_dims, head_channels, head_channels, kernel_size=1, act=act, norm=None, bias=bias),
            Convolution(spatial_dims, head_channels, out_channels, kernel_size=1, conv_only=True, bias=True),
        )

    def forward(self, feats: list[torch.Tensor], z: torch.Tensor | None) -> torch.Tensor:
        """feats: encoder levels; z: (B, S, L) or None. Returns (B, S, C, *spatial) logits (S = 1 without z)."""
        u = self.decoder(feats)
        modulation = self.modulation
        if modulation is not None and z is not None:
            v = modulation(u, z)
        else:
            v = u.unsqueeze(1)
        out = self.head(v.flatten(0, 1))
        return out.reshape([v.shape[0], v.shape[1]] + list(out.shape[1:]))


class MultiDecoderOTUNet(nn.Module):
    """Shared U-Net encoder, K stochastic decoder modules and a router: a mixture of K x S segmentation hypotheses.

    ``num_decoders=1, num_samples=1, latent_dim=0`` is the single-decoder baseline of the paper's Table 5: a plain
    U-Net with no latent, no modulation and no router (``pi = 1``).

    Uncertainty: ``"uncertainty"`` is the predictive entropy of the mixture mean, ``H(sum_ks alpha_ks p_ks)``, divided
    by ``log C`` so that it lies in [0, 1] whatever the number of classes. It is the entropy of the model's whole
    predictive distribution q(y|x) (Eq. 1) at the pixel, which is what the OT loss fits to the annotators'
    distribution, so it is high exactly where annotators (and hypotheses) disagree or where every hypothesis is
    itself unsure; it needs no extra forward pass. ``"mutual_information"`` (same normalisation) is the part of it
    due to disagreement between hypotheses, ``H(mean) - sum_ks alpha_ks H(p_ks)``: large at ambiguous boundaries
    where hypotheses are each confident but differ. Both are computed without gradients (they are diagnostics).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: C, number of classes including background (>= 2; softmax over classes).
        channels: features per encoder level; ``u_e`` has ``channels[-1]`` and the decoded map ``u_d``
            ``F2 = channels[0]`` features. Inputs must have every spatial size divisible by ``2**(len(channels)-1)``.
        num_decoders: K decoder modules.
        num_samples: S latent samples per module (default; ``forward`` can override it).
        latent_dim: L; 0 disables latent and modulation (the modules are then deterministic, and the S samples of a
            module are identical copies computed once).
        shared_decoder: one decoder, modulation and head shared by the K modules, which then differ only by their
            latent Gaussians (needs ``latent_dim > 0`` when ``num_decoders > 1``).
        act: activation (MONAI factory name or ``(name, kwargs)``).
        norm: normalisation of the convolution blocks.
        dropout: dropout of the convolution blocks.
        head_channels: hidden width of the three 1x1 convolutions.
        router_hidden: hidden width of the router MLP (unused when ``num_decoders == 1``).
        bias: bias of the convolutions.
        upsample: ``UpCat`` upsampling mode (``"deconv"``, ``"pixelshuffle"``, ``"nontrainable"``).
        modulation_init_std: spread of the modulation at initialisation, see
            :class:`~monai_osteo.networks.blocks.latent.FeatureWiseModulation`.
        latent_init_mean_std: spread of the initial latent means ``mu_k`` (modules start apart).
        latent_init_sigma: initial latent standard deviation ``sigma_k``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 8,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        num_decoders: int = 4,
        num_samples: int = 4,
        latent_dim: int = 6,
        shared_decoder: bool = False,
        act: str | tuple = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
        norm: str | tuple = ("instance", {"affine": True}),
        dropout: float = 0.0,
        head_channels: int = 32,
        router_hidden: int = 64,
        bias: bool = True,
        upsample: str = "deconv",
        modulation_init_std: float = 0.1,
        latent_init_mean_std: float = 1.0,
        latent_init_sigma: float = 1.0,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}.")
        if out_channels < 2:
            raise ValueError(f"out_channels must be >= 2 (classes incl. background, softmax), got {out_channels!r}.")
        if len(channels) < 2:
            raise ValueError(f"channels must list at least 2 encoder levels, got {channels!r}.")
        if num_decoders < 1 or num_samples < 1 or latent_dim < 0:
            raise ValueError(
                "num_decoders and num_samples must be >= 1 and latent_dim >= 0, "
                f"got {num_decoders!r}, {num_samples!r}, {latent_dim!r}."
            )
        if shared_decoder and latent_dim == 0 and num_decoders > 1:
            raise ValueError(
                f"shared_decoder=True with latent_dim=0 makes the {num_decoders} modules identical; "
                "set latent_dim > 0 or shared_decoder=False."
            )
        self.spatial_dims = spatial_dims
        self.out_channels = out_channels
        self.num_decoders = num_decoders
        self.num_samples = num_samples
        self.latent_dim = latent_dim
        self.shared_decoder = shared_decoder
        self.divisor = 2 ** (len(channels) - 1)
        self.in_channels = in_channels

        self.encoder = _Encoder(spatial_dims, in_channels, channels, act, norm, bias, dropout)
        self.branches = nn.ModuleList(
            _DecoderModule(spatial_dims, channels, out_channels, latent_dim, head_channels, act, norm, bias, dropout,
                           upsample, modulation_init_std)
            for _ in range(1 if shared_decoder else num_decoders)
        )
        self.latent = (
            GaussianLatent(num_decoders, latent_dim, latent_init_mean_std, latent_init_sigma)
            if latent_dim > 0
            else None
        )
        self.router = (
            MixtureRouter(spatial_dims, channels[-1], num_decoders, router_hidden, act) if num_decoders > 1 else None
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing():  # checks on traced shapes would only raise TracerWarnings
            return
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, *spatial) with {self.spatial_dims} spatial dims, "
                f"got {list(x.shape)}."
            )
        for size in x.shape[2:]:
            if size % self.divisor != 0:
                raise ValueError(
                    f"spatial sizes of x must be divisible by 2**(len(channels)-1) = {self.divisor}, got "
                    f"{list(x.shape[2:])}; pad or resize the image (e.g. monai.transforms.DivisiblePad)."
                )

    def _mixture(self, x: torch.Tensor, num_samples: int, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (B, K, S', C, *spatial) logits and (B, K) router weights; S' = 1 without a latent."""
        self._check_input(x)
        feats = self.encoder(x)
        b = x.shape[0]
        router = self.router
        if router is not None:
            pi = router(feats[-1])
        else:
            pi = x.new_ones(b, 1)
        z: torch.Tensor | None = None
        latent = self.latent
        if latent is not None:
            z = latent(b, num_samples, deterministic)
        if self.shared_decoder:
            s = 1 if z is None else z.shape[2]
            zf = None if z is None else z.flatten(1, 2)  # (B, K * S, L): one decoder pass for every module
            out = self.branches[0](feats, zf)
            logits = out.reshape([b, self.num_decoders, s] + list(out.shape[2:]))
        else:
            outs: list[torch.Tensor] = []
            for k, branch in enumerate(self.branches):
                zk = None if z is None else z[:, k]
                outs.append(branch(feats, zk))
            logits = torch.stack(outs, 1)
        return logits, pi

    def forward(
        self, x: torch.Tensor, num_samples: int | None = None, with_uncertainty: bool = True
    ) -> dict[str, torch.Tensor]:
        """Sample S hypotheses per module (also in eval mode; use :meth:`predict_mean` for a deterministic map).

        Args:
            x: (B, in_channels, *spatial) images, spatial sizes divisible by ``2**(len(channels)-1)``.
            num_samples: S for this call (default ``self.num_samples``), e.g. more samples at inference.
            with_uncertainty: compute ``"uncertainty"`` and ``"mutual_information"`` (False skips one pass over
                the logits, e.g. in training steps that do not log them).

        Returns:
            dict with ``"logits"`` (B, K, S, C, *spatial) per-sample logits (for a model without latent, a broadcast
            view of S identical copies); ``"alpha"`` (B, K, S) sample weights ``pi_k / S`` (sum to 1 per image);
            ``"router"`` (B, K) ``pi_k(x)``; ``"mean_prob"`` (B, C, *spatial) mixture mean
            ``sum_k pi_k mean_s softmax(s_k^s)``; with ``with_uncertainty``, ``"uncertainty"`` (B, 1, *spatial)
            normalised predictive entropy and ``"mutual_information"`` (B, 1, *spatial) its between-hypotheses part.
        """
        s = self.num_samples if num_samples is None else num_samples
        if s < 1:
            raise ValueError(f"num_samples must be >= 1, got {s}.")
        logits, pi = self._mixture(x, s, False)
        s_eff = logits.shape[2]
        weights = pi[:, :, None].expand(pi.shape[0], pi.shape[1], s_eff) / s_eff
        probs = torch.softmax(logits, dim=3)
        mean_prob = _weighted_mean(probs, weights)
        out: dict[str, torch.Tensor] = {}
        if with_uncertainty:
            with torch.no_grad():
                entropy = _entropy(mean_prob.detach(), 1, True)
                sample_entropy = -(probs.detach() * torch.log_softmax(logits.detach(), dim=3)).sum(3)
                expected = _weighted_mean(sample_entropy, weights).unsqueeze(1)
                norm = math.log(self.out_channels)
                out["uncertainty"] = (entropy / norm).clamp(0.0, 1.0)
                out["mutual_information"] = ((entropy - expected) / norm).clamp(0.0, 1.0)
        if s_eff != s:  # deterministic modules: S identical hypotheses
            logits = logits.expand([logits.shape[0], logits.shape[1], s] + list(logits.shape[3:]))
        out["logits"] = logits
        out["alpha"] = pi[:, :, None].expand(pi.shape[0], pi.shape[1], s) / s
        out["router"] = pi
        out["mean_prob"] = mean_prob
        return out

    @torch.jit.export
    def predict_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic mixture mean with ``z_k = mu_k``: ``sum_k pi_k(x) softmax(s_k(mu_k))``.

        Args:
            x: (B, in_channels, *spatial).

        Returns:
            (B, C, *spatial) probabilities summing to 1 over C.
        """
        logits, pi = self._mixture(x, 1, True)
        return _weighted_mean(torch.softmax(logits, dim=3), pi[:, :, None])


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """values (B, K, S, ...), weights (B, K, S) -> (B, ...) = sum_ks weights * values."""
    w = weights
    for _ in range(values.dim() - 3):
        w = w.unsqueeze(-1)
    return (w * values).sum([1, 2])


def _entropy(p: torch.Tensor, dim: int, keepdim: bool) -> torch.Tensor:
    """Shannon entropy with ``0 log 0 = 0``."""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(dim, keepdim=keepdim)


class MixtureMeanUNet(nn.Module):
    """Deterministic export of a :class:`MultiDecoderOTUNet`: ``forward(x) = net.predict_mean(x)``.

    Scriptable (``torch.jit.script``, MONAI ``ckpt_export``'s default) and traceable (``use_trace=True``). It loads
    the bare network's checkpoints too (keys without the ``net.`` prefix), so that ``ckpt_export --net_id`` can
    point at this wrapper while the checkpoint holds the trained :class:`MultiDecoderOTUNet`.

    Args:
        net: the trained network.
    """

    def __init__(self, net: MultiDecoderOTUNet):
        super().__init__()
        if not isinstance(net, MultiDecoderOTUNet):
            raise ValueError(f"net must be a MultiDecoderOTUNet, got {type(net).__name__}.")
        self.net = net
        self.register_load_state_dict_pre_hook(_add_net_prefix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, in_channels, *spatial).

        Returns:
            (B, C, *spatial) mixture-mean probabilities.
        """
        return self.net.predict_mean(x)


def _add_net_prefix(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    """Load-state-dict pre-hook: rename bare-network keys ``<prefix>k`` to ``<prefix>net.k``."""
    inner = prefix + "net."
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + key[len(prefix):]] = state_dict.pop(key)
