"""Train task: fine-tune the bone-segmentation bundle on the datastore's labels with its own ``train.json``."""

from __future__ import annotations

import logging

from monailabel.tasks.train.bundle import BundleTrainTask

logger = logging.getLogger(__name__)


class HandBonesTrainTask(BundleTrainTask):
    """MONAI Label's ``BundleTrainTask`` on the app's copy of ``bundles/hand_bone_segmentation``.

    The bundle's ``train.json`` is a standard MONAI ``SupervisedTrainer`` workflow (``train#dataset#data``,
    ``validate#dataset#data``, ``train#trainer#max_epochs``, ``train#handlers``), so MONAI Label's overrides apply
    as they are: the datastore's final labels (one label map per radiograph) train the OT multi-decoder U-Net from
    the current ``models/model.pt``; the best validation Dice is written to ``models/model.pt`` (which the infer
    task reloads) and every epoch to ``models/last.pt``. Only two settings change: ``resume`` is off (a previous
    run's ``last.pt`` would otherwise end the fine-tuning before it starts) and the default epochs are fewer.
    """

    def __init__(self, path: str, conf: dict, max_epochs: int = 10, **kwargs) -> None:
        super().__init__(path, conf, load_strict=True, **kwargs)
        self.default_epochs = int(max_epochs)

    def config(self):
        c = super().config()
        c["max_epochs"] = self.default_epochs
        c["multi_gpu"] = False
        return c

    def _update_overrides(self, overrides):
        overrides["resume"] = False
        return overrides
