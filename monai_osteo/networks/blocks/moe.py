"""Device-aware mixture-of-experts head: ``alpha = softmax(f_g(P + D[device]))``, ``out = sum_i alpha_i E_i(P)``.

- [0] Huang, Guo et al., Opportunistic Osteoporosis Diagnosis via Texture-Preserving Self-Supervision, Mixture of
  Experts and Multi-Task Integration (``papers/vertebral_ct_tpswav_moe.txt``), §2.2, Eq. 2 (gate on the sum of the
  image embedding ``P_I`` and the DXA-device embedding ``D_I``) and Eq. 3 (weighted sum of the N expert heads).
- [1] Jacobs et al., 1991, Adaptive Mixtures of Local Experts (dense soft gating, no top-k, no load-balancing loss).

Written here rather than reused: lightly and MONAI have no gated head conditioned on a categorical side input.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["DeviceMoEHead"]


class DeviceMoEHead(nn.Module):
    """N MLP experts on pooled image features, mixed by a softmax gate that sees the image and the DXA device.

    ``alpha = softmax(f_g(P + D[device]))`` (Eq. 2 of [0]) and ``output = sum_i alpha_i * E_i(P)`` (Eq. 3), a dense
    mixture of the experts' raw outputs (pre-softmax logits for classification columns, raw values for regression
    columns). The last layer of ``f_g`` starts at zero, so every sample starts with the uniform mixture
    ``alpha_i = 1 / N``; the device embedding ``D`` is drawn from N(0, 0.02).

    Ablations (same module, so an ablation changes only what it names):

    - "no MoE": ``num_experts=1, device_embedding=False`` -- ``alpha == 1`` and the head is exactly the MLP ``E_1(P)``.
    - "MoE without device embedding": ``device_embedding=False`` -- ``alpha = softmax(f_g(P))``.
    - "device embedding without MoE": ``num_experts=1, device_embedding=True, embed_into_experts=True`` -- the single
      expert sees ``P + D[device]``.

    ``embed_into_experts=True`` feeds ``P + D[device]`` to the experts as well (default False: as in [0], the device
    embedding enters the gate only).

    Args:
        in_features: width F of the pooled image features ``P`` (the backbone's ``feature_dim``, never a literal).
        num_devices: number of DXA devices (rows of ``D``); ``device`` indices lie in ``[0, num_devices)``.
        num_experts: N.
        out_features: width of each expert's output (e.g. 2 class logits + 1 BMD + 18 position logits = 21).
        expert_hidden: hidden width of each expert.
        dropout: dropout probability after each expert's hidden activation.
        device_embedding: whether to add the learnt device embedding ``D[device]`` to the gate input (Eq. 2).
        gate_hidden: None for a linear gate ``f_g = Linear(F, N)``; else the MLP ``F -> gate_hidden -> GELU -> N``.
        embed_into_experts: whether the experts also receive ``P + D[device]`` (needs ``device_embedding``).

    Attributes:
        embedding: ``nn.Embedding(num_devices, in_features)``, or None without ``device_embedding``.
        gate: ``f_g``, an ``nn.Sequential`` whose last layer is the zero-initialised ``nn.Linear(*, num_experts)``.
        experts: ``nn.ModuleList`` of N ``Sequential(Linear, ReLU, Dropout, Linear)``.
    """

    def __init__(
        self,
        in_features: int,
        num_devices: int = 3,
        num_experts: int = 3,
        out_features: int = 21,
        expert_hidden: int = 256,
        dropout: float = 0.1,
        device_embedding: bool = True,
        gate_hidden: int | None = None,
        embed_into_experts: bool = False,
    ):
        super().__init__()
        for name, value in (
            ("in_features", in_features),
            ("num_devices", num_devices),
            ("num_experts", num_experts),
            ("out_features", out_features),
            ("expert_hidden", expert_hidden),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        if gate_hidden is not None and (int(gate_hidden) != gate_hidden or gate_hidden < 1):
            raise ValueError(f"gate_hidden must be None (linear gate) or an integer >= 1, got {gate_hidden!r}.")
        if embed_into_experts and not device_embedding:
            raise ValueError(
                "embed_into_experts=True needs device_embedding=True (there is no embedding to add); "
                "set device_embedding=True or embed_into_experts=False."
            )
        if device_embedding and num_experts == 1 and not embed_into_experts:
            warnings.warn(
                "with num_experts=1 the gate is constant (alpha == 1), so a device embedding that enters only the gate "
                "has no effect; set embed_into_experts=True for the 'device embedding without MoE' ablation.",
                stacklevel=2,
            )
        self.in_features = int(in_features)
        self.num_devices = int(num_devices)
        self.num_experts = int(num_experts)
        self.out_features = int(out_features)
        self.embed_into_experts = bool(embed_into_experts)

        self.embedding = nn.Embedding(self.num_devices, self.in_features) if device_embedding else None
        if self.embedding is not None:
            nn.init.normal_(self.embedding.weight, mean=0.0, std=0.02)

        if gate_hidden is None:
            self.gate = nn.Sequential(nn.Linear(self.in_features, self.num_experts))
        else:
            self.gate = nn.Sequential(
                nn.Linear(self.in_features, int(gate_hidden)), nn.GELU(), nn.Linear(int(gate_hidden), self.num_experts)
            )
        nn.init.zeros_(self.gate[-1].weight)
        nn.init.zeros_(self.gate[-1].bias)

        self.experts = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Linear(self.in_features, int(expert_hidden)),
                    nn.ReLU(),
                    nn.Dropout(dropout),
                    nn.Linear(int(expert_hidden), self.out_features),
                )
                for _ in range(self.num_experts)
            ]
        )

    def forward(self, features: torch.Tensor, device: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            features: (B, in_features) pooled image features ``P``.
            device: (B,) integer DXA-device indices in ``[0, num_devices)`` (used by the embedding; checked always).

        Returns:
            ``(output, gate)``: (B, out_features) mixture ``sum_i alpha_i E_i``, and (B, num_experts) gate weights
            ``alpha`` whose rows sum to 1.
        """
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"features must have shape (B, {self.in_features}), got {list(features.shape)}; "
                "pool the backbone output to (B, in_features) first."
            )
        if device.dim() != 1 or device.shape[0] != features.shape[0]:
            raise ValueError(
                f"device must have shape (B,) = ({features.shape[0]},), got {list(device.shape)}; "
                "pass one device index per sample."
            )
        if device.dtype != torch.long and device.dtype != torch.int:
            raise ValueError(f"device must be an integer tensor (torch.long), got dtype {device.dtype}.")
        if device.numel() > 0:
            lo = int(device.min())
            hi = int(device.max())
            if lo < 0 or hi >= self.num_devices:
                raise ValueError(
                    f"device must hold indices in [0, {self.num_devices}), got values in [{lo}, {hi}]; "
                    "map each DXA device to an index below num_devices (or raise num_devices)."
                )
        gate_input = features
        expert_input = features
        embedding = self.embedding
        if embedding is not None:
            gate_input = features + embedding(device)
            if self.embed_into_experts:
                expert_input = gate_input
        alpha = torch.softmax(self.gate(gate_input), dim=1)
        outputs: list[torch.Tensor] = []
        for expert in self.experts:
            outputs.append(expert(expert_input))
        stacked = torch.stack(outputs, dim=1)  # (B, N, out_features)
        return (alpha.unsqueeze(2) * stacked).sum(dim=1), alpha
