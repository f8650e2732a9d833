"""S4MI self-supervised pre-training networks: CASS (CNN + ViT agreement) and DINO (student / EMA teacher).

Both wrap :class:`~monai_osteo.networks.nets.s4mi_backbones.S4MIClassifier` backbones, whose weights go to
fine-tuning through ``S4MIClassifier.load_backbone``.

- :class:`CASSNetwork` [1]: the same image goes through a CNN and a ViT, each with a ``projection_dim``-way linear
  head (CASS keeps the 1000-way ImageNet heads during SSL, spec decision S-c); :class:`~monai_osteo.losses.CASSLoss`
  makes the two outputs agree.
- :class:`DINONetwork` [2]: student = backbone features + DINO head, teacher = EMA copy. Preset ``"s4mi"`` follows
  lucidrains/vit-pytorch ``Dino``, which S4MI used [0]: :class:`LucidrainsDINOHead` on the penultimate layer
  (``hidden_layer=-2`` = :meth:`S4MIClassifier.features`), the student sees only the local crops and the teacher
  only the global ones, loss ``(CE(t1, s2) + CE(t2, s1)) / 2`` = lightly's ``DINOLoss`` on these outputs (pairs of
  equal index excluded). Preset ``"caron"`` is canonical DINO: lightly ``DINOProjectionHead(feature_dim, 2048, 256,
  65536, freeze_last_layer=1, norm_last_layer=True)``, the student sees every view.

- [0] Singh et al., 2024, Shifting to machine supervision ... (Sci. Rep.), §Methods/Classification.
- [1] Singh, Sizikova & Cirrone, 2022, CASS: Cross Architectural Self-Supervision for Medical Image Analysis.
- [2] Caron et al., 2021, Emerging Properties in Self-Supervised Vision Transformers (DINO).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightly.models.modules.heads import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum

from monai_osteo.networks.nets.s4mi_backbones import S4MIClassifier
from monai_osteo.networks.nets.ssl_net import encode_by_shape

__all__ = ["CASSNetwork", "DINONetwork", "LucidrainsDINOHead", "DINO_PRESETS"]

#: defaults of the constructor arguments left None; "s4mi" = lucidrains ``Dino`` (K = 65336 is its number)
DINO_PRESETS = {
    "s4mi": {"hidden_dim": 256, "output_dim": 65336, "student_views": "local", "freeze_last_layer": -1},
    "caron": {"hidden_dim": 2048, "bottleneck_dim": 256, "output_dim": 65536, "student_views": "all",
              "freeze_last_layer": 1, "norm_last_layer": True},
}


def _check_classifier(name: str, net) -> None:
    if not isinstance(net, S4MIClassifier):
        raise ValueError(f"{name} must be an S4MIClassifier (build it with s4mi_classifier(arch)), got {type(net)!r}.")


class CASSNetwork(torch.nn.Module):
    """A CNN and a ViT run on the same image; their head outputs are compared by ``CASSLoss``.

    Args:
        cnn: the CNN arm (CASS: ResNet-50).
        vit: the Transformer arm (CASS: ViT-B/16).
        projection_dim: None keeps both heads as built (their widths must agree); an int replaces both heads by fresh
            ``Linear(feature_dim, projection_dim)`` layers (1000 in CASS).
    """

    def __init__(self, cnn: S4MIClassifier, vit: S4MIClassifier, projection_dim: int | None = None) -> None:
        super().__init__()
        _check_classifier("cnn", cnn)
        _check_classifier("vit", vit)
        if projection_dim is not None:
            cnn.reset_head(projection_dim)
            vit.reset_head(projection_dim)
        if cnn.head.out_features != vit.head.out_features:
            raise ValueError(
                f"the heads of cnn and vit must have one width, got {cnn.head.out_features} and "
                f"{vit.head.out_features}; pass projection_dim (e.g. 1000, as CASS)."
            )
        self.cnn, self.vit = cnn, vit
        self.projection_dim = int(cnn.head.out_features)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x: (B, C, H, W), one augmented image per sample for both arms (CASS code); H = W = the ViT's img_size.

        Returns:
            ``{"cnn": (B, projection_dim), "vit": (B, projection_dim)}``.
        """
        return {"cnn": self.cnn(x), "vit": self.vit(x)}

    def cnn_state_dict(self) -> dict[str, torch.Tensor]:
        """The CNN arm's weights, for ``S4MIClassifier.load_backbone`` before fine-tuning."""
        return self.cnn.state_dict()

    def vit_state_dict(self) -> dict[str, torch.Tensor]:
        """The ViT arm's weights, for ``S4MIClassifier.load_backbone`` before fine-tuning."""
        return self.vit.state_dict()


class LucidrainsDINOHead(torch.nn.Module):
    """DINO head of lucidrains/vit-pytorch (``MLP`` with ``projection_layers=4``, used by S4MI):
    ``num_layers`` x (Linear + GELU) to ``hidden_dim`` -> L2 norm (eps 1e-6) -> ``Linear(hidden_dim, output_dim)``.

    Lightly's ``DINOProjectionHead`` (Caron's head) differs: no GELU after its third Linear (the bottleneck), a
    weight-normed last layer without bias (gain fixed to 1 with ``norm_last_layer``) and truncated-normal(0.02)
    initialisation; here the last layer is a plain biased Linear and every layer keeps PyTorch's default
    initialisation, as in lucidrains' code.

    Args:
        input_dim: backbone feature width.
        hidden_dim: width of the hidden layers (lucidrains ``projection_hidden_size``, 256).
        output_dim: K (lucidrains ``num_classes_K``, 65336).
        num_layers: Linear + GELU blocks (lucidrains ``projection_layers - 1``, 3).
        freeze_last_layer: the last layer gets no gradient while ``epoch < freeze_last_layer`` (-1: never; lucidrains
            has no freezing).
    """

    def __init__(self, input_dim: int, hidden_dim: int = 256, output_dim: int = 65336, num_layers: int = 3,
                 freeze_last_layer: int = -1) -> None:
        super().__init__()
        for name, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim), ("output_dim", output_dim),
                            ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
        dims = [input_dim] + [hidden_dim] * num_layers
        blocks = [m for a, b in zip(dims[:-1], dims[1:]) for m in (torch.nn.Linear(a, b), torch.nn.GELU())]
        self.layers = torch.nn.Sequential(*blocks)
        self.last_layer = torch.nn.Linear(hidden_dim, output_dim)
        self.freeze_last_layer = freeze_last_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, input_dim) features.

        Returns:
            (B, output_dim) logits.
        """
        x = self.layers(x)
        return self.last_layer(x / x.norm(dim=-1, keepdim=True).clamp(min=1e-6))

    def cancel_last_layer_gradients(self, epoch: int) -> None:
        """Drop the last layer's gradients while ``epoch < freeze_last_layer`` (as lightly's DINO head)."""
        if epoch < self.freeze_last_layer:
            for p in self.last_layer.parameters():
                p.grad = None


class DINONetwork(torch.nn.Module):
    """DINO student (``backbone.features`` + head) and EMA teacher, with S4MI's (lucidrains) or Caron's settings.

    The teacher backbone and head are built fresh and loaded with the student's weights (lucidrains deep-copies the
    student; a ``deepcopy`` fails on lightly's weight-normed layer), never require gradients and move only through
    :meth:`momentum_update` (lightly ``update_momentum``: ``t <- m t + (1 - m) s``; lucidrains: m = 0.9 per step).
    The backbone's classification ``head`` is not used (no gradient) but kept, so that :meth:`backbone_state_dict`
    is a whole ``S4MIClassifier`` state dict. Views of one shape are encoded in one call (DINO's multi-crop
    wrapper; lucidrains calls the network once per crop, which differs only in BatchNorm batch statistics).

    With ``student_views="local"`` (lucidrains), the student outputs are those of the local views, in order, and
    lightly's ``DINOLoss`` pairs teacher ``i`` with student ``j != i``: with 2 global + 2 local views this is
    lucidrains' ``(CE(t1, s2) + CE(t2, s1)) / 2``, global and local view ``i`` being crops of augmentation ``i``.

    Args:
        backbone: the student :class:`S4MIClassifier`; ViTs need every view at ``img_size`` (lucidrains resizes all
            crops to the image size).
        preset: ``"s4mi"`` or ``"caron"``; sets the defaults of the arguments left None (``DINO_PRESETS``).
        output_dim: K; must equal ``PairSSLLoss(output_dim)``.
        hidden_dim: hidden width of the head.
        bottleneck_dim: ``"caron"`` only: bottleneck before the weight-normed layer.
        num_global: number of global views; they come first and are the teacher's inputs.
        student_views: ``"local"`` (the views after the global ones) or ``"all"``.
        freeze_last_layer: the last head layer gets no gradient during the first epochs (-1: never), applied by
            :meth:`cancel_last_layer_gradients` (``TeacherMomentumHandler`` calls it).
        norm_last_layer: ``"caron"`` only: fix the weight-norm gain of the last layer to 1.
    """

    def __init__(
        self,
        backbone: S4MIClassifier,
        preset: str = "s4mi",
        output_dim: int | None = None,
        hidden_dim: int | None = None,
        bottleneck_dim: int | None = None,
        num_global: int = 2,
        student_views: str | None = None,
        freeze_last_layer: int | None = None,
        norm_last_layer: bool | None = None,
    ) -> None:
        super().__init__()
        _check_classifier("backbone", backbone)
        if preset not in DINO_PRESETS:
            raise ValueError(f"preset must be one of {sorted(DINO_PRESETS)}, got {preset!r}.")
        if preset == "s4mi" and (bottleneck_dim is not None or norm_last_layer is not None):
            raise ValueError("bottleneck_dim and norm_last_layer belong to preset 'caron' (lucidrains' head has no "
                             "bottleneck or weight norm); leave them None with preset='s4mi'.")
        given = {"output_dim": output_dim, "hidden_dim": hidden_dim, "bottleneck_dim": bottleneck_dim,
                 "student_views": student_views, "freeze_last_layer": freeze_last_layer,
                 "norm_last_layer": norm_last_layer}
        cfg = {k: v if given[k] is None else given[k] for k, v in DINO_PRESETS[preset].items()}
        if cfg["student_views"] not in ("local", "all"):
            raise ValueError(f"student_views must be 'local' or 'all', got {cfg['student_views']!r}.")
        if isinstance(num_global, bool) or not isinstance(num_global, int) or num_global < 1:
            raise ValueError(f"num_global must be an int >= 1 (global views come first), got {num_global!r}.")
        self.preset, self.num_global, self.cfg = preset, num_global, cfg
        self.student_views, self.output_dim = cfg["student_views"], cfg["output_dim"]
        self.backbone = backbone
        self.head = self._build_head()
        self.teacher_backbone = S4MIClassifier(**backbone.config)
        self.teacher_head = self._build_head()
        p = next(backbone.parameters())
        self.teacher_backbone.to(device=p.device, dtype=p.dtype)
        self.teacher_head.to(device=p.device, dtype=p.dtype)
        self.teacher_backbone.load_state_dict(backbone.state_dict())
        self.teacher_head.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)

    def _build_head(self) -> torch.nn.Module:
        c, dim = self.cfg, self.backbone.feature_dim
        if self.preset == "s4mi":
            return LucidrainsDINOHead(dim, c["hidden_dim"], c["output_dim"], freeze_last_layer=c["freeze_last_layer"])
        return DINOProjectionHead(dim, c["hidden_dim"], c["bottleneck_dim"], c["output_dim"], batch_norm=False,
                                  freeze_last_layer=c["freeze_last_layer"], norm_last_layer=c["norm_last_layer"])

    def forward(self, views: Sequence[torch.Tensor], step: int | None = None) -> dict:
        """Student and teacher outputs, ready for ``PairSSLLoss(method="dino")``.

        Args:
            views: ``num_global`` global views, then the local ones, each (B, C, H_v, W_v) (``MultiViewSSLTrainer``
                order). ``"local"`` needs at least ``max(2, num_global)`` local views, ``"all"`` at least 2 views.
            step: unused (accepted for ``MultiViewSSLTrainer``).

        Returns:
            dict with ``"student"``: one (B, output_dim) tensor per student view (the local views, or all);
            ``"teacher"``: ``num_global`` (B, output_dim) tensors without gradient; ``"features"``: the student's
            (B, feature_dim) backbone features of its views.
        """
        if isinstance(views, torch.Tensor):
            raise ValueError(f"views must be a list of tensors (B, C, H, W), got one tensor {tuple(views.shape)}.")
        views, g = list(views), self.num_global
        student_in = views[g:] if self.student_views == "local" else views
        need = max(2, g) if self.student_views == "local" else 2
        if len(views) < g or len(student_in) < need:
            raise ValueError(
                f"student_views={self.student_views!r} with num_global={g} needs {g} global views followed by at least "
                f"{need} student views, got {len(views)} views; add local crops or use student_views='all'."
            )
        features = encode_by_shape(student_in, self.backbone.features)
        student = self.head(torch.cat(features, dim=0)).split([f.shape[0] for f in features], dim=0)
        return {"student": list(student), "teacher": self._teacher(views[:g]), "features": features}

    @torch.no_grad()
    def _teacher(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        features = encode_by_shape(views, self.teacher_backbone.features)
        return list(self.teacher_head(torch.cat(features, dim=0)).split([f.shape[0] for f in features], dim=0))

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        """Teacher EMA: ``t <- m * t + (1 - m) * s`` for every backbone and head parameter (lightly
        ``update_momentum``).

        Args:
            m: momentum in [0, 1] (lucidrains 0.9 constant; Caron 0.996 -> 1 cosine via ``TeacherMomentumHandler``).
        """
        if not 0.0 <= float(m) <= 1.0:
            raise ValueError(f"m must be in [0, 1], got {m!r}.")
        update_momentum(self.backbone, self.teacher_backbone, float(m))
        update_momentum(self.head, self.teacher_head, float(m))

    def cancel_last_layer_gradients(self, epoch: int) -> None:
        """Drop the gradients of the student head's last layer while ``epoch < freeze_last_layer`` (call between
        backward and the optimiser step).

        Args:
            epoch: current epoch, 0-based.
        """
        self.head.cancel_last_layer_gradients(epoch)

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The student backbone's weights, for ``S4MIClassifier.load_backbone`` before fine-tuning."""
        return self.backbone.state_dict()
