"""Screen hand radiographs with a trained hand_osteo model: decision, per-bone probabilities, uncertainty, QC.

:class:`HandScreener` maps one radiograph to a result (segment at reduced size, upsample, cut the 7 bone
patches at native scale, classify each, average, Eq. 10). :class:`ScreeningRunner` applies it to a dataset of
files and writes per radiograph a JSON and a PNG report; unreadable files are reported and skipped, every file
is written atomically and named ``<index>_<hash>`` (never after the file name, which may identify a patient).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from monai_osteo.bundle.paths import output_id
from monai_osteo.data.labels import BONES
from monai_osteo.engines.hand_osteo.segment import segment_radiograph
from monai_osteo.io import atomic_write_json
from monai_osteo.metrics.quality import (
    describe_qc_flags,
    missing_bone_names,
    screening_qc_flags,
    segmentation_confidence,
)
from monai_osteo.transforms import ExtractBonePatches

__all__ = ["HandScreener", "ScreeningRunner"]

logger = logging.getLogger("monai_osteo.hand_osteo")


class HandScreener:
    """Trained segmentation network + bone classifier -> subject decision for one radiograph.

    Args:
        segmentation_network: a ``MultiDecoderOTUNet`` (uncertainty maps) or its exported mean path.
        classifier: a ``BoneClassifier`` (logits of no osteoporosis / osteoporosis per patch).
        segmentation_checkpoint, classifier_checkpoint: state dicts to load (``None``: use as given).
        segmentation_size: (h, w) the segmentation network works at.
        patch_size: side the patches are resized to for the classifier (the SSL global view size).
        threshold: decision threshold on the subject probability; 0.5 = argmax of the mean (Eq. 10).
        uncertainty: compute the segmentation uncertainty maps (one extra pass over the hypotheses).
        margin, min_area: see :class:`~monai_osteo.transforms.ExtractBonePatches`.
        min_confidence, min_bones_for_hand, area_range: QC thresholds, see
            :func:`~monai_osteo.metrics.screening_qc_flags`.
        device: "auto", "cpu", "cuda".
    """

    def __init__(self, segmentation_network: torch.nn.Module, classifier: torch.nn.Module,
                 segmentation_checkpoint: str | os.PathLike | None = None,
                 classifier_checkpoint: str | os.PathLike | None = None, segmentation_size=(256, 176),
                 patch_size: int = 224, threshold: float = 0.5, uncertainty: bool = True, margin: float = 0.05,
                 min_area: float = 5e-4, min_confidence: float = 0.8, min_bones_for_hand: int = 4,
                 area_range=(0.005, 0.6), device: str = "auto") -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if str(device) == "auto" \
            else torch.device(device)
        for net, ckpt, what in ((segmentation_network, segmentation_checkpoint, "segmentation"),
                                (classifier, classifier_checkpoint, "classifier")):
            if ckpt is not None:
                if not Path(ckpt).is_file():
                    raise FileNotFoundError(f"{ckpt}: {what} checkpoint not found; train the bundle first "
                                            "(configs/train.json) or point the config at your models/ folder.")
                net.load_state_dict(torch.load(ckpt, map_location="cpu"))
        self.segmentation_network = segmentation_network.to(self.device).eval()
        self.classifier = classifier.to(self.device).eval()
        self.segmentation_size = tuple(int(s) for s in segmentation_size)
        self.patch_size, self.threshold, self.uncertainty = int(patch_size), float(threshold), uncertainty
        self.extractor = ExtractBonePatches(margin=margin, min_area=min_area)
        self.qc = {"min_confidence": min_confidence, "min_bones_for_hand": min_bones_for_hand,
                   "area_range": tuple(area_range)}

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> dict:
        """Screen a (1, H, W) radiograph in [0, 1].

        Returns:
            dict with ``decision`` (0/1), ``decision_name``, ``probability`` (subject, class 1),
            ``bone_probabilities`` {bone: p or None}, ``bones_found``, ``bones_missing``, ``segmentation``
            ``{"confidence", "mean_entropy", "mean_mutual_information", "bone_area_fraction"}``, ``qc_flags``,
            ``qc_messages``; and, for the report, ``_labels`` (H, W) uint8 and ``_uncertainty`` (h, w).
        """
        img = torch.as_tensor(image, dtype=torch.float32).to(self.device)
        if img.ndim == 2:
            img = img[None]
        seg = segment_radiograph(self.segmentation_network, img, self.segmentation_size, uncertainty=self.uncertainty)
        prob = seg["prob"]
        bones, not_found = self.extractor.find_bones(prob, tuple(img.shape[1:]))
        patches, _ = self.extractor.make_patches(img, bones, not_found, masks=False)
        bone_probs: dict[str, float | None] = {b: None for b in BONES}
        class_probs = []
        if patches:
            batch = torch.stack([F.interpolate(p[None], size=(self.patch_size,) * 2, mode="bilinear",
                                               antialias=True, align_corners=False)[0] for p in patches])
            class_probs = torch.softmax(self.classifier(batch).float(), 1).cpu().numpy()
            for b, p in zip(bones, class_probs):
                bone_probs[b.name] = float(p[1])
        labels = torch.zeros(img.shape[1:], dtype=torch.uint8)
        for b in bones:
            r0, c0, r1, c1 = b.bbox
            labels[r0:r1, c0:c1][torch.from_numpy(b.component)] = b.value
        low = prob.argmax(0)
        confidence = segmentation_confidence(prob, low)
        area = float((labels > 0).float().mean())
        found = [b.name for b in bones]
        missing = missing_bone_names(found, BONES)
        flags = screening_qc_flags(found, confidence, area, expected_bones=len(BONES), **self.qc)
        if len(class_probs):
            mean = np.mean(class_probs, 0)
            p1, decision = float(mean[1]), int(mean[1] >= self.threshold)
        else:
            p1, decision = float("nan"), -1
        unc = seg.get("entropy")
        mi = seg.get("mutual_information")
        fg = low > 0
        return {
            "decision": decision,
            "decision_name": {1: "osteoporosis", 0: "no osteoporosis"}.get(decision, "no decision (no bone found)"),
            "probability": p1, "threshold": self.threshold, "bone_probabilities": bone_probs,
            "bones_found": found, "bones_missing": missing,
            "segmentation": {"confidence": confidence, "bone_area_fraction": area,
                             "mean_entropy_in_bones": _masked_mean(unc, fg),
                             "mean_mutual_information_in_bones": _masked_mean(mi, fg)},
            "qc_flags": flags, "qc_messages": describe_qc_flags(flags, missing),
            "_labels": labels.numpy(), "_uncertainty": None if unc is None else unc.cpu().numpy(),
        }


def _root_cause(e: BaseException) -> str:
    """The innermost error of a chain (MONAI wraps transform errors in "applying transform ...")."""
    while e.__cause__ is not None:
        e = e.__cause__
    return f"{type(e).__name__}: {e}"


def _redact(message: str, source: str) -> str:
    """``message`` with the input's path and file name replaced by ``<input>``."""
    for s in sorted({source, os.path.basename(source), Path(source).stem}, key=len, reverse=True):
        if s:
            message = message.replace(s, "<input>")
    return message


def _masked_mean(x, mask) -> float | None:
    if x is None:
        return None
    return float(x[mask].mean()) if bool(mask.any()) else float(x.mean())


class ScreeningRunner:
    """Screen every radiograph of ``dataset`` and write ``<id>.json`` + ``<id>.png`` per radiograph and a summary.

    ``dataset[i]`` must give ``{"image": (1, H, W) tensor}`` (e.g. ``LoadRadiographd`` in its transform) and its
    ``data[i]["image"]`` the source path. A file that fails to load or screen is logged and listed in
    ``summary.json`` under ``failures``; the others are written. Output ids are ``r<index>_<sha256[:8] of the
    path>``: no patient name or file name appears in an output name (the JSON keeps the source path only if
    ``record_source`` is set).

    Args:
        dataset: MONAI ``Dataset`` of ``{"image": path}`` items with a loading transform.
        screener: the :class:`HandScreener`.
        output_dir: where to write.
        report_png: also write the PNG report.
        record_source: keep the input path in the JSON (off by default: paths may carry identifiers).
    """

    def __init__(self, dataset, screener: HandScreener, output_dir: str | os.PathLike, report_png: bool = True,
                 record_source: bool = False) -> None:
        self.dataset, self.screener, self.output_dir = dataset, screener, Path(output_dir)
        self.report_png, self.record_source = report_png, record_source

    def run(self) -> dict:
        from monai_osteo.report import save_screening_report_png

        self.output_dir.mkdir(parents=True, exist_ok=True)
        done, failures = [], []
        sources = [d["image"] if isinstance(d, dict) else d for d in getattr(self.dataset, "data", [])]
        for i in tqdm(range(len(self.dataset)), desc="screening", unit="radiograph", disable=None):
            src = str(sources[i]) if i < len(sources) else str(i)
            rid = output_id(src, i)
            start = time.perf_counter()
            try:
                item = self.dataset[i]
                res = self.screener(item["image"])
            except Exception as e:  # noqa: BLE001 - report the bad file, finish the rest
                reason = _root_cause(e)
                if self.record_source:
                    logger.error("%s (%s): skipped: %s", rid, src, reason)
                    failures.append({"id": rid, "source": src, "error": reason})
                else:  # the reader's message names the file: keep only what it says is wrong
                    reason = _redact(reason, src)
                    logger.error("%s: skipped: %s", rid, reason)
                    failures.append({"id": rid, "error": reason})
                continue
            labels, unc = res.pop("_labels"), res.pop("_uncertainty")
            res = {"id": rid, **res, "seconds": round(time.perf_counter() - start, 3)}
            if self.record_source:
                res["source"] = src
            atomic_write_json(self.output_dir / f"{rid}.json", res)
            if self.report_png:
                image = np.asarray(torch.as_tensor(item["image"]).cpu())[0]
                save_screening_report_png(self.output_dir / f"{rid}.png", image, labels, res["bone_probabilities"],
                                          res["decision_name"], 0.0 if np.isnan(res["probability"])
                                          else res["probability"], threshold=res["threshold"], uncertainty=unc,
                                          qc_flags=res["qc_messages"], title=rid)
            done.append({"id": rid, "decision": res["decision"], "probability": res["probability"],
                         "qc_flags": res["qc_flags"]})
        summary = {"screened": done, "failures": failures, "count": len(done), "failed": len(failures)}
        atomic_write_json(self.output_dir / "summary.json", summary)
        logger.info("screened %d radiograph(s), %d failed; reports in %s", len(done), len(failures), self.output_dir)
        return summary
