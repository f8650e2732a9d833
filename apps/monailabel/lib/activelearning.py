"""Active learning: rank unlabelled radiographs by the multi-decoder U-Net's epistemic uncertainty in the bones."""

from __future__ import annotations

import logging
import os
import threading

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy

from monai_osteo.bundle.label_app import bone_uncertainty, read_bone_bundle
from monai_osteo.data import LoadRadiograph

logger = logging.getLogger(__name__)

SCORE_KEY = "bone_mutual_information"


class BoneUncertaintyScorer:
    """Score images with :func:`monai_osteo.bundle.label_app.bone_uncertainty` under the bundle's current model.

    A score is stored in the datastore's image info with the model file's modification time, so a score is
    recomputed once the model is fine-tuned and reused otherwise. Unreadable images are logged (by id) and skipped.
    """

    def __init__(self, bundle: str, device: str = "cpu") -> None:
        self.bundle, self.device = bundle, device
        self._lock = threading.Lock()
        self._net = None

    def model_version(self) -> float:
        return os.stat(os.path.join(self.bundle, "models", "model.pt")).st_mtime

    def scores(self, datastore: Datastore, images: list[str]) -> dict[str, float]:
        with self._lock:
            version = self.model_version()
            if self._net is None or self._net[2] != version:
                net, size = read_bone_bundle(self.bundle, self.device)
                self._net = (net, size, version)
            net, size, _ = self._net
            loader, out = LoadRadiograph(), {}
            for image_id in images:
                info = datastore.get_image_info(image_id).get(SCORE_KEY, {})
                if info.get("model_version") == version:
                    out[image_id] = float(info["score"])
                    continue
                try:
                    score = bone_uncertainty(net, loader(datastore.get_image_uri(image_id)), size)
                except Exception as e:  # noqa: BLE001 - a bad image is skipped, the others ranked
                    logger.error("active learning: image %s skipped: %s", image_id, type(e).__name__)
                    continue
                datastore.update_image_info(image_id, {SCORE_KEY: {"score": score, "model_version": version}})
                out[image_id] = score
            return out


class BoneUncertainty(Strategy):
    """Next image to label: the unlabelled radiograph with the highest mean mutual information inside its bones."""

    def __init__(self, scorer: BoneUncertaintyScorer) -> None:
        super().__init__("Highest epistemic uncertainty (mutual information of the multi-decoder U-Net's hypotheses, "
                         "averaged inside the predicted bones)")
        self.scorer = scorer

    def __call__(self, request, datastore: Datastore):
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        scores = self.scorer.scores(datastore, sorted(images))
        if not scores:
            return None
        image = max(sorted(scores), key=lambda k: scores[k])
        logger.info("bone uncertainty: selected %s (score %.5f of %d unlabelled)", image, scores[image], len(scores))
        return {"id": image, "score": scores[image]}


class BoneUncertaintyScoring(ScoringMethod):
    """Score every unlabelled radiograph (stored in the datastore as ``bone_mutual_information``)."""

    def __init__(self, scorer: BoneUncertaintyScorer) -> None:
        super().__init__("Mean mutual information inside the bones, per unlabelled radiograph")
        self.scorer = scorer

    def __call__(self, request, datastore: Datastore):
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        scores = self.scorer.scores(datastore, sorted(images))
        return {"scored": len(scores), "executed": True}
