"""Hand screening inferer: radiograph -> bone segmentation -> 7 bone patches at native scale -> patch classifier.

MONAI's inferers call one network on the input (optionally on sliding windows); screening calls the segmentation
network on the letterboxed radiograph, cuts the patches from the full-resolution radiograph and calls the patch
classifier (the evaluator's ``network``) on them, hence this inferer. Subject probability (Eq. 10) and QC are
post-processing transforms (:mod:`monai_osteo.transforms.screening`), the reports a handler.

- [0] hand_xray_osteoporosis_journal, Figs. 1-2 and Eq. 10.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import Inferer

from monai_osteo.data.labels import BONES
from monai_osteo.engines.hand_osteo.segment import segment_radiograph
from monai_osteo.metrics.anatomy import measure_bone_layout
from monai_osteo.metrics.quality import segmentation_confidence
from monai_osteo.transforms import ExtractBonePatches
from monai_osteo.transforms.presets import bone_patch_resize

__all__ = ["HandScreeningInferer"]


class HandScreeningInferer(Inferer):
    """Segment each radiograph of a batch, cut its bone patches and classify them with ``network``.

    Args:
        segmentation_network: a ``MultiDecoderOTUNet`` (uncertainty maps) or its mean path (``MixtureMeanUNet``).
        segmentation_size: (h, w) the segmentation network works at (letterboxed, as in training).
        patch_size: side the patches are resized to for the classifier, with the same resize as the probe's
            training patches (MONAI ``Resize``, bilinear, anti-aliased).
        patch_normalization: the patches' intensity normalisation before the resize, as the probe's training
            patches had it (see :func:`~monai_osteo.transforms.presets.bone_patch_intensity`).
        margin, min_area: see :class:`~monai_osteo.transforms.ExtractBonePatches` (the patch stage's settings).
        uncertainty: compute the predictive entropy and mutual information maps.
        min_image_side: images with a shorter side (a thumbnail, an icon) are not segmented: no bone is found.
        seed: the segmentation's hypotheses sample latents; each radiograph draws them from this seed (the global
            random state is left as it was), so a radiograph's result does not depend on what was screened before
            it or in the same batch. None: draw from the global random state.

    ``__call__(inputs, network)`` takes (B, 1, H, W) radiographs in [0, 1] and returns one dict per radiograph:
    ``bone_probabilities`` {bone: class-1 probability or None}, ``class_probabilities`` (n_found, C),
    ``bones_found``, ``confidence``, ``bone_area_fraction``, ``mean_entropy_in_bones``,
    ``mean_mutual_information_in_bones``, ``labels`` (H, W) uint8 bone map, ``uncertainty`` (h, w) or None,
    ``logits`` (n_found, C), ``bone_features`` (n_found, F) encoder features (None unless ``network`` is a
    :class:`~monai_osteo.networks.nets.BoneClassifier`), ``layout`` (:func:`~monai_osteo.metrics.anatomy.
    measure_bone_layout` of the segmentation's label map at its working resolution, ``present`` = the bones kept)
    for the screening gates.
    """

    def __init__(self, segmentation_network: torch.nn.Module, segmentation_size: Sequence[int] = (256, 176),
                 patch_size: int = 224, margin: float = 0.05, min_area: float = 5e-4, uncertainty: bool = True,
                 min_image_side: int = 32, seed: int | None = 0, patch_normalization: str | None = None) -> None:
        super().__init__()
        self.segmentation_network = segmentation_network
        self.segmentation_size = tuple(int(s) for s in segmentation_size)
        self.extractor = ExtractBonePatches(margin=margin, min_area=min_area)
        self.resize = bone_patch_resize(patch_size, patch_normalization)
        self.uncertainty = uncertainty
        self.min_image_side = int(min_image_side)
        self.seed = seed

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs) -> list[dict]:
        self.segmentation_network.eval()
        network.eval()
        return [self._screen(torch.as_tensor(img).float(), network) for img in inputs]

    def _screen(self, img: torch.Tensor, network: torch.nn.Module) -> dict:
        if min(img.shape[1:]) < self.min_image_side:  # nothing to segment (the input gate says why): no bone
            prob = img.new_zeros((len(BONES) + 1, *img.shape[1:]))
            prob[0] = 1.0
            seg = {"prob": prob}
        else:
            seg = segment_radiograph(self.segmentation_network, img, self.segmentation_size,
                                     uncertainty=self.uncertainty, seed=self.seed)
        prob = seg["prob"]
        bones, not_found = self.extractor.find_bones(prob, tuple(img.shape[1:]))
        patches, _ = self.extractor.make_patches(img, bones, not_found, masks=False)
        bone_probs: dict[str, float | None] = {b: None for b in BONES}
        class_probs, logits, features = torch.zeros((0, 2)), torch.zeros((0, 2)), None
        if patches:
            batch = torch.stack([torch.as_tensor(self.resize(p.cpu())) for p in patches]).to(img.device)
            if hasattr(network, "backbone") and hasattr(network, "fc"):  # BoneClassifier: keep the encoder features
                features = network.backbone(batch).float()
                logits = network.fc(features).float().cpu()
                features = features.cpu().numpy()
            else:
                logits = network(batch).float().cpu()
            class_probs = torch.softmax(logits, 1)
            for b, p in zip(bones, class_probs):
                bone_probs[b.name] = float(p[1])
        labels = torch.zeros(img.shape[1:], dtype=torch.uint8)
        for b in bones:
            r0, c0, r1, c1 = b.bbox
            labels[r0:r1, c0:c1][torch.from_numpy(b.component)] = b.value
        low = prob.argmax(0)
        fg = low > 0
        layout = measure_bone_layout(low.cpu().numpy())
        kept = {b.name for b in bones}
        layout["present"] &= np.array([name in kept for name in BONES])
        unc, mi = seg.get("entropy"), seg.get("mutual_information")
        return {
            "bone_probabilities": bone_probs, "class_probabilities": class_probs.numpy(),
            "bones_found": [b.name for b in bones], "confidence": segmentation_confidence(prob, low),
            "bone_area_fraction": float((labels > 0).float().mean()),
            "mean_entropy_in_bones": _masked_mean(unc, fg), "mean_mutual_information_in_bones": _masked_mean(mi, fg),
            "labels": labels.numpy(), "uncertainty": None if unc is None else unc.cpu().numpy(),
            "logits": logits.numpy(), "bone_features": features, "layout": layout,
        }


def _masked_mean(x, mask) -> float | None:
    if x is None:
        return None
    return float(x[mask].mean()) if bool(mask.any()) else float(x.mean())
