"""Vertebral osteoporosis network: 3-D ResNet encoder + device-aware mixture-of-experts multi-task head.

One tensor out (class logits | standardised BMD | position logits | gate weights), so that MONAI's
``verify_net_in_out`` and TorchScript export work; ``split`` / ``split_vertebra_output`` name the columns.

- [0] Huang, Guo et al., Opportunistic Osteoporosis Diagnosis via Texture-Preserving Self-Supervision, Mixture of
  Experts and Multi-Task Integration (``papers/vertebral_ct_tpswav_moe.txt``), §2.2 Eqs. 2-3 (MoE head conditioned on
  the DXA device), §2.3 Eq. 4 (three tasks: osteoporosis class, BMD regression, vertebral position T1-L6 as 18 classes).
- [1] He et al., 2016, Deep Residual Learning for Image Recognition.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from monai_osteo.networks.blocks.moe import DeviceMoEHead
from monai_osteo.networks.nets.ssl_backbone import build_resnet_backbone

__all__ = ["VertebraNet", "split_vertebra_output"]


def split_vertebra_output(
    output: torch.Tensor, num_classes: int = 2, num_positions: int = 18
) -> dict[str, torch.Tensor]:
    """Name the columns of a :class:`VertebraNet` output.

    Args:
        output: (B, num_classes + 1 + num_positions + N) network output.
        num_classes: number of osteoporosis-class logits.
        num_positions: number of vertebral-position logits.

    Returns:
        dict with ``"class"`` (B, num_classes) logits, ``"bmd"`` (B,) standardised BMD, ``"position"``
        (B, num_positions) logits and ``"gate"`` (B, N) mixture weights (all remaining columns).
    """
    stop = num_classes + 1 + num_positions
    if output.dim() != 2 or output.shape[1] <= stop:
        raise ValueError(
            f"output must have shape (B, > {stop}) for num_classes={num_classes}, num_positions={num_positions} "
            f"(class | bmd | position | gate), got {list(output.shape)}; check num_classes and num_positions."
        )
    return {
        "class": output[:, :num_classes],
        "bmd": output[:, num_classes],
        "position": output[:, num_classes + 1 : stop],
        "gate": output[:, stop:],
    }


class VertebraNet(torch.nn.Module):
    """MONAI ResNet encoder (pooled features ``P``) and a :class:`DeviceMoEHead` with three tasks.

    The head's experts output ``num_classes + 1 + num_positions`` columns (class logits, BMD in standardised units,
    position logits), mixed by ``alpha = softmax(f_g(P + D[device]))`` (Eqs. 2-3 of [0]). The encoder is stored as
    ``backbone``, the attribute name of :class:`~monai_osteo.networks.nets.ssl_net.SSLNetwork`, so a self-supervised
    checkpoint's ``backbone.*`` weights load with :meth:`load_encoder`.

    Args:
        spatial_dims: 3 for CT ROIs (2 allowed).
        in_channels: input channels.
        backbone: ResNet name, see :func:`~monai_osteo.networks.nets.ssl_backbone.build_resnet_backbone`.
        widen_factor: ResNet channel-width multiplier (1: standard widths; 0.25 / 0.125 for the CPU presets).
        conv1_t_stride: stride of the first convolution (2: the standard ResNet stem).
        num_classes: osteoporosis-class logits.
        num_positions: vertebral-position logits (T1-T12, L1-L6: 18).
        num_devices: number of DXA devices.
        num_experts: N (1 with ``device_embedding=False``: the "no MoE" ablation).
        device_embedding: add a learnt DXA-device embedding to the gate input.
        embed_into_experts: feed ``P + D[device]`` to the experts too ("device embedding without MoE" with N = 1).
        expert_hidden: hidden width of each expert.
        dropout: dropout inside each expert.
        gate_hidden: None for a linear gate, else the hidden width of a GELU MLP gate.

    Attributes:
        backbone: (B, in_channels, *spatial) -> (B, feature_dim).
        feature_dim: encoder output width.
        head: the :class:`DeviceMoEHead`.
        layout: ``{"class", "bmd", "position", "gate"} -> (start, stop)`` column ranges of the output.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        backbone: str = "resnet34",
        widen_factor: float = 1.0,
        conv1_t_stride: int = 2,
        num_classes: int = 2,
        num_positions: int = 18,
        num_devices: int = 3,
        num_experts: int = 3,
        device_embedding: bool = True,
        embed_into_experts: bool = False,
        expert_hidden: int = 256,
        dropout: float = 0.1,
        gate_hidden: int | None = None,
    ):
        super().__init__()
        if num_classes < 1 or num_positions < 1:
            raise ValueError(f"num_classes and num_positions must be >= 1, got {num_classes!r} and {num_positions!r}.")
        self.num_classes = int(num_classes)
        self.num_positions = int(num_positions)
        self.num_experts = int(num_experts)
        self.backbone, self.feature_dim = build_resnet_backbone(
            backbone,
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            conv1_t_stride=conv1_t_stride,
            widen_factor=widen_factor,
        )
        self.head = DeviceMoEHead(
            self.feature_dim,
            num_devices=num_devices,
            num_experts=num_experts,
            out_features=self.num_classes + 1 + self.num_positions,
            expert_hidden=expert_hidden,
            dropout=dropout,
            device_embedding=device_embedding,
            gate_hidden=gate_hidden,
            embed_into_experts=embed_into_experts,
        )
        c, p = self.num_classes, self.num_positions
        self.layout = {
            "class": (0, c),
            "bmd": (c, c + 1),
            "position": (c + 1, c + 1 + p),
            "gate": (c + 1 + p, c + 1 + p + self.num_experts),
        }

    def forward(self, image: torch.Tensor, device: torch.Tensor) -> torch.Tensor:
        """
        Args:
            image: (B, in_channels, *spatial) vertebral ROI.
            device: (B,) integer DXA-device indices in ``[0, num_devices)``.

        Returns:
            (B, num_classes + 1 + num_positions + num_experts): class logits | BMD (standardised) | position logits |
            gate weights; see :attr:`layout` and :meth:`split`.
        """
        out, gate = self.head(self.backbone(image), device)
        return torch.cat([out, gate], dim=1)

    @torch.jit.export
    def split(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """Name the columns of ``forward``'s output: ``"class"`` (B, num_classes), ``"bmd"`` (B,), ``"position"``
        (B, num_positions), ``"gate"`` (B, num_experts)."""
        expected = self.layout["gate"][1]
        if output.dim() != 2 or output.shape[1] != expected:
            raise ValueError(f"output must have shape (B, {expected}), got {list(output.shape)}.")
        return split_vertebra_output(output, self.num_classes, self.num_positions)

    def load_encoder(self, state_dict_or_path: Mapping | str | os.PathLike, prefix: str = "backbone.") -> list[str]:
        """Load the encoder weights of a self-supervised checkpoint into ``backbone`` (strict on the backbone keys).

        Args:
            state_dict_or_path: a state dict of :class:`~monai_osteo.networks.nets.ssl_net.SSLNetwork` (or of any
                module holding the encoder under ``prefix``), a MONAI ``CheckpointSaver`` dict with a ``"model"``
                entry, or the path of a file holding either (read with ``torch.load(..., weights_only=True)``).
            prefix: key prefix of the encoder weights (``"module.backbone."`` for a DDP-wrapped network).

        Returns:
            The loaded keys, as named in this network (``"backbone.*"``).

        Raises:
            ValueError: no key starts with ``prefix``, backbone keys are missing or unexpected, or shapes differ
                (e.g. another ``backbone`` or ``widen_factor`` than the pre-trained network).
        """
        state = state_dict_or_path
        if isinstance(state, (str, os.PathLike)):
            state = torch.load(state, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping):
            raise ValueError(
                f"state_dict_or_path must be a state dict, a checkpoint dict or a path, got {type(state).__name__}."
            )
        if "model" in state and isinstance(state["model"], Mapping):
            state = state["model"]
        encoder = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not encoder:
            raise ValueError(
                f"no key of the checkpoint starts with prefix {prefix!r} (first keys: {list(state)[:5]}); "
                "pass the prefix under which the encoder was saved."
            )
        own = self.backbone.state_dict()
        missing = sorted(set(own) - set(encoder))
        unexpected = sorted(set(encoder) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"checkpoint encoder does not match backbone: missing keys {missing[:10]} ({len(missing)} in all), "
                f"unexpected keys {unexpected[:10]} ({len(unexpected)} in all); check backbone and prefix."
            )
        mismatched = [
            f"{k}: {tuple(encoder[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if encoder[k].shape != v.shape
        ]
        if mismatched:
            raise ValueError(
                f"checkpoint encoder shapes differ from backbone (checkpoint vs network): {mismatched[:5]} "
                f"({len(mismatched)} in all); build VertebraNet with the pre-trained backbone and widen_factor."
            )
        self.backbone.load_state_dict(encoder, strict=True)
        return ["backbone." + k for k in own]
