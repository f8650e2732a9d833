"""Infer tasks: the bone-segmentation bundle (an 8-label map) and hand screening (label map + screening JSON)."""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from typing import Any

import numpy as np
import torch
from fastapi import HTTPException
from monai.transforms import SaveImaged
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask
from monailabel.tasks.infer.bundle import BundleInferTask
from PIL import Image

from monai_osteo.bundle.label_app import HandScreener, load_network_weights
from monai_osteo.bundle.paths import redact
from monai_osteo.data.labels import BONES

logger = logging.getLogger(__name__)

#: MONAI Label's label names -> values, as the bundle's ``channel_def`` (background left out, as MONAI Label does)
BONE_LABELS = {name.lower(): i + 1 for i, name in enumerate(BONES)}


def unreadable(path: str, error: BaseException) -> HTTPException:
    """HTTP 422 naming what is wrong with an image and the fix, without its path (which may carry a patient name)."""
    reason = redact(f"{type(error).__name__}: {error}", str(path))
    return HTTPException(status_code=422, detail=f"the image cannot be read as a radiograph ({reason}); replace it "
                                                 "with a DICOM, PNG, TIFF, NIfTI or NRRD radiograph")


def json_safe(x):
    """JSON-compliant copy of a report: NaN/inf -> None (no probability), arrays -> lists."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if hasattr(x, "tolist"):
        return json_safe(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_label_png(labels: np.ndarray) -> str:
    """Write a label map as an 8-bit PNG in a temporary file (the server removes it once sent) and return its path."""
    fd, path = tempfile.mkstemp(suffix=".png", prefix="monai_osteo_")
    os.close(fd)
    Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8)).save(path)
    return path


class HandBonesInferTask(BundleInferTask):
    """``bundles/hand_bone_segmentation`` (the app's working copy) served by MONAI Label's ``BundleInferTask``.

    The bundle's ``inference.json`` already maps the prediction back to the radiograph's grid (``Invertd`` of the
    letterbox) and takes its argmax, so MONAI Label's ``Restored`` (which expects a NIfTI-like meta dict and fails
    on radiographs) is not added; its saver is dropped. The network is the bundle's mean path (``MixtureMeanUNet``
    around the multi-decoder U-Net): its weights are loaded into the wrapped network strictly, where MONAI Label's
    non-strict loader would silently load nothing. The label map is returned as a PNG on the radiograph's grid
    (values 0 background, 1 ulna, 2 radius, 3-7 M1-M5).
    """

    def __init__(self, path: str, conf: dict, **kwargs: Any) -> None:
        super().__init__(path, conf, type=InferType.SEGMENTATION, post_filter=[SaveImaged], add_post_restore=False,
                         load_strict=True, **kwargs)

    def run_pre_transforms(self, data, transforms):
        try:
            return super().run_pre_transforms(data, transforms)
        except Exception as e:  # noqa: BLE001 - a clear 4xx instead of MONAI Label's bare 500
            raise unreadable(str(data.get("image_path", "")), e) from None

    def _get_network(self, device, data):
        path = self.get_path()
        if not path:
            raise MONAILabelException(MONAILabelError.INFERENCE_ERROR, f"no model at {self.path}")
        mtime = os.stat(path).st_mtime
        cached = self._networks.get(device)
        if cached and cached[1] == mtime:
            return cached[0]
        network = self.bundle_config.get_parsed_content("network_def", instantiate=True)
        load_network_weights(network.net, path, device)
        network = network.to(torch.device(device)).eval()
        self._networks[device] = (network, mtime)
        return network

    def writer(self, data: dict, extension=None, dtype=None):
        pred = data[self.output_label_key]
        labels = np.asarray(pred.detach().cpu() if torch.is_tensor(pred) else pred)
        labels = labels[0] if labels.ndim == 3 else labels
        found = [name for name, v in BONE_LABELS.items() if bool((labels == v).any())]
        return write_label_png(labels), {"bones_found": found, "shape": list(labels.shape)}


class HandScreeningInferTask(BasicInferTask):
    """Hand osteoporosis screening (``bundles/hand_osteo``'s ``inference.json``) of one radiograph.

    Returns the bone label map (PNG, the radiograph's grid) and, as the result JSON, the screening report: decision
    (1 osteoporosis, 0 no osteoporosis, -1 no decision), subject probability (Eq. 10), per-bone probabilities, bones
    found and missing, QC flags and messages, the screening gates and the segmentation's confidence and uncertainty
    (mean predictive entropy and mutual information inside the bones).
    """

    def __init__(self, run_dir: str, configs: tuple[str, ...] = ("quick.json",), overrides: dict | None = None,
                 **kwargs: Any) -> None:
        self.run_dir, self.configs, self.overrides = run_dir, tuple(configs), dict(overrides or {})
        super().__init__(path=os.path.join(run_dir, "model.pt"), network=None, type=InferType.SEGMENTATION,
                         labels=BONE_LABELS, dimension=2,
                         description="Hand osteoporosis screening: bone label map + decision, subject and per-bone "
                                     "probabilities, QC flags, uncertainty (research only)", **kwargs)
        self._screeners: dict[str, tuple[HandScreener, float]] = {}

    def pre_transforms(self, data=None):  # the screener runs inference.json's own preprocessing
        return []

    def post_transforms(self, data=None):  # ... and its post-processing (gates, decision, QC)
        return []

    def is_valid(self) -> bool:
        return all(os.path.isfile(os.path.join(self.run_dir, n)) for n in ("model.pt", "segmentation.pt"))

    def _screener(self, device: str) -> HandScreener:
        mtime = max(os.stat(os.path.join(self.run_dir, n)).st_mtime for n in ("model.pt", "segmentation.pt"))
        cached = self._screeners.get(device)
        if cached is None or cached[1] != mtime:
            cached = (HandScreener(self.run_dir, self.configs, device=device, overrides=self.overrides), mtime)
            self._screeners[device] = cached
        return cached[0]

    def __call__(self, request, callbacks=None):
        begin = time.time()
        image = request.get("image")
        if not isinstance(image, str) or not os.path.isfile(image):
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, "hand screening needs one radiograph file")
        device = request.get("device", "cpu")
        device = device[0] if isinstance(device, (list, tuple)) else device
        device = device if (device != "cuda" or torch.cuda.is_available()) else "cpu"
        try:
            labels, report = self._screener(device)(image)
        except ValueError as e:  # unreadable: the reader's reason (the screener already removed the file's name)
            raise HTTPException(status_code=422, detail=f"{e}; replace it with a DICOM, PNG, TIFF, NIfTI or NRRD "
                                                        "radiograph") from None
        report = json_safe(report)
        report.pop("id", None)
        report["label_names"] = self.labels
        report["latencies"] = {"total": round(time.time() - begin, 2)}
        return write_label_png(labels), report

    def clear(self):
        self._screeners.clear()
