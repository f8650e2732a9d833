"""MONAI Label app of monai_osteo: hand/wrist radiographs.

Models (``/info``): ``hand_bones`` (``bundles/hand_bone_segmentation``: 8-label map, fine-tuned by ``/train``) and
``hand_screening`` (``bundles/hand_osteo`` inference: label map + screening JSON). Active learning:
``bone_uncertainty`` (highest mutual information of the multi-decoder U-Net inside the bones), ``random``, ``first``.

Start it with ``bash scripts/run.sh label-server`` (see ``apps/monailabel/README.md``). ``--conf`` keys:

- ``hand_osteo_run``: a trained hand_osteo run folder (default ``bundles/hand_osteo/runs/quick``, written by
  ``bash scripts/run.sh demo``); its ``segmentation.pt`` seeds ``hand_bones``, and it serves ``hand_screening``.
- ``hand_osteo_configs``: the configs that run was trained with after ``train.json`` (default ``quick.json``;
  ``""`` for the paper preset).
- ``hand_osteo_overrides``: a JSON object of further ids the run was trained with (``--seg_channels ...``), if any.
- ``model_dir``: where the app keeps its working copy of the segmentation bundle (default ``apps/monailabel/model``).
- ``max_epochs``: default fine-tuning epochs of ``/train/hand_bones`` (10).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import monailabel
from lib.activelearning import BoneUncertainty, BoneUncertaintyScorer, BoneUncertaintyScoring
from lib.infers import HandBonesInferTask, HandScreeningInferTask
from lib.trainers import HandBonesTrainTask
from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

from monai_osteo.bundle.label_app import prepare_bone_bundle, run_settings

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]


class HandOsteoApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        self.run_dir = conf.get("hand_osteo_run") or str(REPO / "bundles" / "hand_osteo" / "runs" / "quick")
        configs = conf.get("hand_osteo_configs", "quick.json")
        self.configs = tuple(c for c in configs.split(",") if c)
        self.overrides = json.loads(conf.get("hand_osteo_overrides") or "{}")
        model_dir = conf.get("model_dir") or os.path.join(app_dir, "model")
        self.bones_bundle = os.path.join(model_dir, "hand_bone_segmentation")
        weights = os.path.join(self.run_dir, "segmentation.pt")
        if not os.path.isfile(weights) and not os.path.isfile(os.path.join(self.bones_bundle, "models", "model.pt")):
            raise FileNotFoundError(
                f"{weights} is missing and the app has no bone segmentation model yet: train the hand_osteo bundle "
                "first (`bash scripts/run.sh demo`, ~14 min on 2 cores) or pass --conf hand_osteo_run RUN_FOLDER.")
        overrides = run_settings(self.configs, self.overrides)
        prepare_bone_bundle(self.bones_bundle, weights if os.path.isfile(weights) else None, overrides)
        self.max_epochs = int(conf.get("max_epochs", "10"))
        self.scorer = BoneUncertaintyScorer(self.bones_bundle)
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="monai_osteo - hand radiographs",
                         description="Hand/wrist radiographs: bone segmentation (ulna, radius, M1-M5) with "
                                     "uncertainty-based active learning, and osteoporosis screening (research only)",
                         version=monailabel.__version__)

    def init_infers(self):
        infers = {"hand_bones": HandBonesInferTask(self.bones_bundle, self.conf)}
        screening = HandScreeningInferTask(self.run_dir, self.configs, self.overrides)
        if screening.is_valid():
            infers["hand_screening"] = screening
        else:
            logger.warning("hand_screening not served: %s has no trained hand_osteo models", self.run_dir)
        return infers

    def init_trainers(self):
        return {"hand_bones": HandBonesTrainTask(self.bones_bundle, self.conf, max_epochs=self.max_epochs)}

    def init_strategies(self):
        return {"bone_uncertainty": BoneUncertainty(self.scorer), "random": Random(), "first": First()}

    def init_scoring_methods(self):
        return {"bone_uncertainty": BoneUncertaintyScoring(self.scorer)}
