"""Feature pooling of a ResNet encoder for a frozen linear read-out: the last stage only, or every stage.

- [0] He et al., 2016, Deep Residual Learning for Image Recognition (the stages).
- [1] Zeiler and Fergus, 2014, Visualizing and Understanding Convolutional Networks; Yosinski et al., 2014, How
  transferable are features in deep neural networks? (early stages keep low-level intensity and edge information
  that later stages discard); Goyal et al., 2019, Scaling and Benchmarking Self-Supervised Visual Representation
  Learning (linear probes on every stage of a self-supervised ResNet).

Why: on the hand phantoms the osteoporosis signal is the shape of a bone's intensity distribution (how much of it is
bright cortex), a low-level property. The last stage of a briefly pre-trained encoder keeps it only as a small
residual; the global means of all four stages keep more of it (``bundles/hand_osteo/docs/README.md``,
``feature_pooling``). MONAI's ``ResNetFeatures`` returns the stage maps but needs its own weights layout and
pre-trained download logic; here the stages of the very encoder the self-supervised network trained are reused, with
the same state-dict keys, so checkpoints load unchanged.
"""

from __future__ import annotations

import torch

from monai_osteo.networks.nets.ssl_backbone import stage_width

__all__ = ["FEATURE_POOLINGS", "StagePooledResNet", "pooled_encoder"]

#: ``"avg"``: global average of the last stage (the ResNet's own pooling, [0]); ``"stages"``: global averages of the
#: four stages, concatenated.
FEATURE_POOLINGS = ("avg", "stages")


class StagePooledResNet(torch.nn.Module):
    """A MONAI ResNet (without ``fc``) that returns the global average of each of its four stages, concatenated.

    The modules are the given ResNet's own (shared, not copied), registered under the same names, so
    ``state_dict()`` has exactly the ResNet's keys and a checkpoint of either loads into the other.

    Args:
        resnet: a MONAI ``ResNet`` (e.g. from :func:`~monai_osteo.networks.nets.build_resnet_backbone`).

    Attributes:
        feature_dim: sum of the four stages' widths (ResNet-18: 64 + 128 + 256 + 512 = 960).
    """

    def __init__(self, resnet: torch.nn.Module):
        super().__init__()
        missing = [n for n in ("conv1", "bn1", "act", "maxpool", "layer1", "layer2", "layer3", "layer4")
                   if not hasattr(resnet, n)]
        if missing:
            raise TypeError(f"resnet must be a MONAI ResNet (modules conv1 ... layer4), missing {missing!r}.")
        if getattr(resnet, "fc", None) is not None:
            raise ValueError("resnet must have no classification layer (build it with feed_forward=False).")
        self.conv1, self.bn1, self.act, self.maxpool = resnet.conv1, resnet.bn1, resnet.act, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        self.no_max_pool = bool(resnet.no_max_pool)
        self.feature_dim = sum(stage_width(s) for s in (self.layer1, self.layer2, self.layer3, self.layer4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *spatial) -> (B, feature_dim): stage 1's channel means first, stage 4's last."""
        x = self.act(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        x1 = self.layer1(x)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return torch.cat([h.flatten(2).mean(2) for h in (x1, x2, x3, x4)], dim=1)


def pooled_encoder(resnet: torch.nn.Module, pooling: str = "avg") -> torch.nn.Module:
    """The encoder whose output the linear read-out sees: ``resnet`` itself (``"avg"``) or a
    :class:`StagePooledResNet` sharing its modules (``"stages"``)."""
    if pooling not in FEATURE_POOLINGS:
        raise ValueError(f"feature_pooling must be one of {FEATURE_POOLINGS!r}, got {pooling!r}.")
    return resnet if pooling == "avg" else StagePooledResNet(resnet)
