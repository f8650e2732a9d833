"""BYOL, SimSiam and DINO around the U-Net's own encoder (:class:`ResNetEncoder`), MedSASS's SSL baselines [3].

MedSASS compares its Otsu-pretrained encoder with BYOL, SimSiam and DINO pretraining of the same ResNet-50 encoder,
transferred into the U-Net afterwards. The encoder here is therefore the U-Net's truncated :class:`ResNetEncoder`
(features = global average pool of its deepest map), so that ``ResNetUNet.load_encoder(net.encoder_state_dict())``
works key for key. Heads, EMA update and ``requires_grad`` switches are lightly's; only the wiring (multi-crop
grouping, teacher copies, output dictionary) is ours.

- [0] Grill et al., 2020, BYOL: Bootstrap Your Own Latent.
- [1] Chen & He, 2021, SimSiam: Exploring Simple Siamese Representation Learning.
- [2] Caron et al., 2021, DINO: Emerging Properties in Self-Supervised Vision Transformers.
- [3] Singh & Cirrone, MedSASS §3.2 (SSL baselines on ResNet-50).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightly.models.modules.heads import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
    SimSiamPredictionHead,
    SimSiamProjectionHead,
)
from lightly.models.utils import deactivate_requires_grad, update_momentum

from monai_osteo.networks.nets.resnet_unet import ResNetEncoder
from monai_osteo.networks.nets.ssl_net import encode_by_shape

__all__ = ["EncoderSSLNetwork", "MOMENTUM_SSL_METHODS", "MOMENTUM_SSL_HEAD_DEFAULTS"]

MOMENTUM_SSL_METHODS = ("byol", "simsiam", "dino")

#: head widths of the papers, used where the constructor argument is None
MOMENTUM_SSL_HEAD_DEFAULTS = {
    "byol": {"hidden_dim": 4096, "projection_dim": 256, "prediction_hidden_dim": 4096},
    "simsiam": {"hidden_dim": 2048, "projection_dim": 2048, "prediction_hidden_dim": 512},
    "dino": {"hidden_dim": 2048, "bottleneck_dim": 256, "output_dim": 65536},
}


class EncoderSSLNetwork(torch.nn.Module):
    """Online encoder + lightly heads (and EMA teacher copies for BYOL and DINO), multi-crop grouping.

    - ``"byol"`` [0]: online ``BYOLProjectionHead(feature_dim, hidden_dim, projection_dim)`` +
      ``BYOLPredictionHead(projection_dim, prediction_hidden_dim, projection_dim)``; the teacher is a copy of the
      encoder and projection head, updated only by :meth:`momentum_update`.
    - ``"simsiam"`` [1]: ``SimSiamProjectionHead(feature_dim, hidden_dim, projection_dim)`` +
      ``SimSiamPredictionHead(projection_dim, prediction_hidden_dim, projection_dim)``; the targets are the online
      projections with the gradient stopped; no teacher.
    - ``"dino"`` [2]: student ``DINOProjectionHead(feature_dim, hidden_dim, bottleneck_dim, output_dim, batch_norm,
      freeze_last_layer, norm_last_layer)``; the teacher is a copy of the encoder and head (same initial weights, as
      the DINO code; lightly's example draws a fresh teacher head). The teacher sees only the first ``num_global``
      views, the student all views (lightly's DINO example).

    The teacher copies are built fresh and loaded with the online weights (a ``deepcopy`` fails on the weight-normed
    DINO layer), never require gradients, and are updated by :meth:`momentum_update` (lightly ``update_momentum``:
    ``t <- m t + (1 - m) s``, parameters only; the teacher's BatchNorm statistics follow its own forward passes, as
    in lightly). They stay in ``parameters()`` (for checkpoints); optimisers skip them since they never get a
    gradient. Views of equal shape are concatenated and encoded in one call, and each head runs once on all views
    (as :class:`~monai_osteo.networks.nets.SSLNetwork`), so BatchNorm statistics span the views of one call.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (3 for RGB).
        method: one of ``MOMENTUM_SSL_METHODS``.
        backbone: :class:`ResNetEncoder` backbone (``"resnet50"`` in MedSASS).
        encoder_depth: feature levels of the encoder (3 in MedSASS: ``feature_dim`` 512 for ResNet-50); must match
            the ``ResNetUNet`` that receives the weights.
        num_global: number of global views, which come first; BYOL/SimSiam targets and DINO teacher outputs are
            computed for these only.
        hidden_dim: hidden width of the projection head (None: ``MOMENTUM_SSL_HEAD_DEFAULTS``, BYOL 4096,
            SimSiam 2048, DINO 2048).
        projection_dim: output width of the BYOL/SimSiam projection and prediction heads (None: BYOL 256,
            SimSiam 2048).
        prediction_hidden_dim: hidden width of the BYOL/SimSiam prediction head (None: BYOL 4096, SimSiam 512).
        bottleneck_dim: DINO bottleneck width before the weight-normed layer (None: 256).
        output_dim: DINO output width K (None: 65536); must equal ``PairSSLLoss(output_dim)``.
        batch_norm: BatchNorm in the DINO head's hidden layers.
        freeze_last_layer: DINO: the last layer gets no gradient during the first ``freeze_last_layer`` epochs
            (applied by :meth:`cancel_last_layer_gradients`, which ``TeacherMomentumHandler`` calls; -1: never).
        norm_last_layer: DINO: fix the weight-norm gain of the last layer to 1.

    Attributes:
        encoder: the online (student) :class:`ResNetEncoder`.
        feature_dim: width of the pooled features.
        projection_head: BYOL/SimSiam projection head, DINO student head.
        prediction_head: BYOL/SimSiam prediction head (None for DINO).
        teacher_encoder, teacher_head: BYOL/DINO EMA copies (None for SimSiam).

    Example::

        net = EncoderSSLNetwork(method="byol")  # MedSASS: ResNet-50, depth 3
        out = net([v1, v2])  # v*: (B, 3, 224, 224)
        unet = ResNetUNet(2, 3, 1); unet.load_encoder(net.encoder_state_dict())
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        method: str = "byol",
        backbone: str = "resnet50",
        encoder_depth: int = 3,
        num_global: int = 2,
        hidden_dim: int | None = None,
        projection_dim: int | None = None,
        prediction_hidden_dim: int | None = None,
        bottleneck_dim: int | None = None,
        output_dim: int | None = None,
        batch_norm: bool = False,
        freeze_last_layer: int = -1,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        if method not in MOMENTUM_SSL_METHODS:
            raise ValueError(f"method must be one of {MOMENTUM_SSL_METHODS}, got {method!r}.")
        if isinstance(num_global, bool) or not isinstance(num_global, int) or num_global < 1:
            raise ValueError(f"num_global must be an int >= 1 (global views come first), got {num_global!r}.")
        given = {
            "hidden_dim": hidden_dim,
            "projection_dim": projection_dim,
            "prediction_hidden_dim": prediction_hidden_dim,
            "bottleneck_dim": bottleneck_dim,
            "output_dim": output_dim,
        }
        dims = {k: v if given[k] is None else given[k] for k, v in MOMENTUM_SSL_HEAD_DEFAULTS[method].items()}
        for name, value in dims.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
        self.method, self.num_global, self.dims = method, num_global, dims
        self._encoder_args = (backbone, in_channels, encoder_depth, spatial_dims)
        self._head_args = (batch_norm, freeze_last_layer, norm_last_layer)
        self.encoder = ResNetEncoder(*self._encoder_args)
        self.feature_dim = self.encoder.feature_dim
        self.projection_head = self._build_head()
        self.prediction_head: torch.nn.Module | None = None
        if method != "dino":
            predictor = BYOLPredictionHead if method == "byol" else SimSiamPredictionHead
            self.prediction_head = predictor(
                dims["projection_dim"], dims["prediction_hidden_dim"], dims["projection_dim"]
            )
        self.teacher_encoder: ResNetEncoder | None = None
        self.teacher_head: torch.nn.Module | None = None
        if method != "simsiam":
            self.teacher_encoder = ResNetEncoder(*self._encoder_args)
            self.teacher_encoder.load_state_dict(self.encoder.state_dict())
            self.teacher_head = self._build_head()
            self.teacher_head.load_state_dict(self.projection_head.state_dict())
            deactivate_requires_grad(self.teacher_encoder)
            deactivate_requires_grad(self.teacher_head)

    def _build_head(self) -> torch.nn.Module:
        d = self.dims
        if self.method == "byol":
            return BYOLProjectionHead(self.feature_dim, d["hidden_dim"], d["projection_dim"])
        if self.method == "simsiam":
            return SimSiamProjectionHead(self.feature_dim, d["hidden_dim"], d["projection_dim"])
        batch_norm, freeze_last_layer, norm_last_layer = self._head_args
        return DINOProjectionHead(
            self.feature_dim,
            d["hidden_dim"],
            d["bottleneck_dim"],
            d["output_dim"],
            batch_norm=batch_norm,
            freeze_last_layer=freeze_last_layer,
            norm_last_layer=norm_last_layer,
        )

    @staticmethod
    def encode(views: Sequence[torch.Tensor], encoder: torch.nn.Module) -> list[torch.Tensor]:
        """Pooled features of ``views`` with one ``encoder`` call per distinct view shape.

        Args:
            views: ``V`` tensors (B_v, C, *spatial_v).
            encoder: a :class:`ResNetEncoder` (the online or the teacher one).

        Returns:
            ``V`` tensors (B_v, feature_dim): global average pool of the deepest feature map, in view order.
        """
        return encode_by_shape(views, lambda x: encoder(x)[-1].flatten(2).mean(-1))

    def forward(self, views: Sequence[torch.Tensor], step: int | None = None) -> dict:
        """Online (and teacher) outputs of all views, ready for :class:`~monai_osteo.losses.PairSSLLoss`.

        Args:
            views: list of ``V >= max(2, num_global)`` tensors (B, C, *spatial_v), global views first; views of
                different shapes (DINO global + local crops) are allowed.
            step: current optimisation step; unused (accepted for ``MultiViewSSLTrainer``).

        Returns:
            dict with ``"features"``: ``V`` pooled online features (B, feature_dim); for ``"byol"``/``"simsiam"``
            ``"predictions"``: ``V`` tensors (B, projection_dim) and ``"targets"``: ``num_global`` tensors
            (B, projection_dim) without gradient (BYOL: teacher projections; SimSiam: online projections,
            detached); for ``"dino"`` ``"student"``: ``V`` tensors (B, output_dim) and ``"teacher"``: ``num_global``
            tensors (B, output_dim) without gradient.
        """
        if isinstance(views, torch.Tensor):
            raise ValueError(
                f"views must be a list of at least 2 tensors (B, C, *spatial), got one tensor of shape "
                f"{tuple(views.shape)}; use net.encode([x], net.encoder) for features of one view."
            )
        views = list(views)
        if len(views) < max(2, self.num_global):
            raise ValueError(
                f"views must hold at least max(2, num_global={self.num_global}) tensors, got {len(views)}."
            )
        features = self.encode(views, self.encoder)
        sizes = [f.shape[0] for f in features]
        projections = self.projection_head(torch.cat(features, dim=0))
        out: dict = {"features": features}
        g = self.num_global
        if self.method == "dino":
            out["student"] = list(projections.split(sizes, dim=0))
            out["teacher"] = self._teacher(views[:g])
            return out
        out["predictions"] = list(self.prediction_head(projections).split(sizes, dim=0))
        if self.method == "byol":
            out["targets"] = self._teacher(views[:g])
        else:
            out["targets"] = [z.detach() for z in projections.split(sizes, dim=0)[:g]]
        return out

    @torch.no_grad()
    def _teacher(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        features = self.encode(views, self.teacher_encoder)
        return list(self.teacher_head(torch.cat(features, dim=0)).split([f.shape[0] for f in features], dim=0))

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        """EMA update of the teacher (BYOL, DINO): ``t <- m * t + (1 - m) * s`` for every parameter (lightly
        ``update_momentum``). A no-op for SimSiam.

        Args:
            m: momentum in [0, 1] (1: the teacher stays as it is).
        """
        if not 0.0 <= float(m) <= 1.0:
            raise ValueError(f"m must be in [0, 1], got {m!r}.")
        if self.teacher_encoder is None or self.teacher_head is None:
            return
        update_momentum(self.encoder, self.teacher_encoder, float(m))
        update_momentum(self.projection_head, self.teacher_head, float(m))

    def cancel_last_layer_gradients(self, epoch: int) -> None:
        """DINO: drop the gradients of the student head's last layer while ``epoch < freeze_last_layer`` (call
        between backward and the optimiser step). A no-op for BYOL/SimSiam.

        Args:
            epoch: current epoch, 0-based.
        """
        if self.method == "dino":
            self.projection_head.cancel_last_layer_gradients(epoch)

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The online (student) encoder's weights with :class:`ResNetEncoder` keys, for
        ``ResNetUNet.load_encoder`` (MedSASS "E" transfer)."""
        return self.encoder.state_dict()
