"""What the MONAI Label app (``apps/monailabel``) serves, without MONAI Label: the bone-segmentation bundle's working
copy, one-radiograph screening and the active-learning score.

MONAI Label 0.8.5 cannot be installed beside this project's main environment (its pydicom-seg dependency needs
numpy < 2), so the app is a thin layer of MONAI Label task classes over these functions, which the main test suite
checks against the bundles' own workflows; the app's HTTP tests run in the separate environment
(``bash scripts/run.sh label-test``).

- [0] hand_xray_osteoporosis_journal: Eqs. 1-9 (segmentation and its hypotheses), Eq. 10 (subject probability).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import list_data_collate

from monai_osteo.bundle.hand_osteo import recorded_settings
from monai_osteo.bundle.paths import find_bundle_root, output_id, redact
from monai_osteo.io import atomic_copy, atomic_write_json

__all__ = ["HandScreener", "bone_uncertainty", "load_network_weights", "prepare_bone_bundle", "read_bone_bundle",
           "recorded_settings", "run_settings"]

logger = logging.getLogger("monai_osteo.label_app")

#: settings of the hand_osteo run's segmentation stage -> the segmentation bundle's ids
_SEG_IDS = {"seg_spatial_size": "spatial_size", "seg_channels": "channels", "seg_num_decoders": "num_decoders",
            "seg_num_samples": "num_samples", "seg_latent_dim": "latent_dim", "seg_head_channels": "head_channels"}
#: the architecture ids a working copy may override (they must match the weights)
ARCH_IDS = tuple(_SEG_IDS.values())


def load_network_weights(network: torch.nn.Module, path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a checkpoint written by the bundles (a bare state dict, or ``{"model": state dict, ...}``), strictly.

    MONAI Label's own loader is not strict by default and a wrapper's keys (``net.``) silently miss; this one fails
    with the file's name and the missing/unexpected keys.
    """
    state = torch.load(path, map_location=device, weights_only=True)
    state = state.get("model", state) if isinstance(state, Mapping) else state
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"{path}: the weights do not fit the network ({e}); check that the architecture "
                           "settings (channels, decoders, samples, latent and head sizes) are the ones it was "
                           "trained with.") from e
    return network


def run_settings(configs: Sequence[str] = ("quick.json",), overrides: Mapping[str, object] | None = None) -> dict:
    """The segmentation architecture of a hand_osteo run trained with ``train.json`` + ``configs`` + ``overrides``,
    under the segmentation bundle's ids (``seg_spatial_size`` -> ``spatial_size``, ...)."""
    parser = ConfigParser()
    root = Path(find_bundle_root("hand_osteo")) / "configs"
    parser.read_config([str(root / c) for c in ("train.json", *configs)])
    parser.update(dict(overrides or {}))
    return {new: parser.get_parsed_content(old) for old, new in _SEG_IDS.items()}


def prepare_bone_bundle(dest: str | os.PathLike, weights: str | os.PathLike | None = None,
                        overrides: Mapping[str, object] | None = None) -> Path:
    """Make (or refresh) a working copy of ``bundles/hand_bone_segmentation`` for MONAI Label at ``dest``.

    MONAI Label's ``BundleInferTask``/``BundleTrainTask`` read ``configs/inference.json``, ``configs/train.json``
    and ``models/model.pt`` of a bundle folder, and training writes into ``models/``: the app serves a copy so that
    fine-tuning never overwrites the repository's bundle. ``overrides`` (architecture and ``spatial_size`` of the
    weights, e.g. from :func:`run_settings`) are written into both configs, so the copy runs alone with
    ``python -m monai.bundle run --config_file <dest>/configs/inference.json`` too. ``weights`` is copied to
    ``models/model.pt`` only if the copy has no model yet: a model fine-tuned from the app's labels is kept.
    """
    src = Path(find_bundle_root("hand_bone_segmentation"))
    dest = Path(dest)
    (dest / "models").mkdir(parents=True, exist_ok=True)
    (dest / "configs").mkdir(exist_ok=True)
    over = dict(overrides or {})
    unknown = sorted(set(over) - set(ARCH_IDS))
    if unknown:
        raise ValueError(f"prepare_bone_bundle: unknown overrides {unknown}; allowed: {list(ARCH_IDS)}.")
    atomic_copy(src / "configs" / "logging.conf", dest / "configs" / "logging.conf")
    atomic_copy(src / "LICENSE", dest / "LICENSE")
    if (src / "docs").is_dir():
        shutil.copytree(src / "docs", dest / "docs", dirs_exist_ok=True)
    for name in ("train.json", "inference.json"):
        config = json.loads((src / "configs" / name).read_text())
        config.update({k: list(v) if isinstance(v, tuple) else v for k, v in over.items()})
        atomic_write_json(dest / "configs" / name, config, indent=4)
    meta = json.loads((src / "configs" / "metadata.json").read_text())
    if over.get("spatial_size") is not None:  # the metadata states the network's input size
        for part in ("inputs", "outputs"):
            for v in meta["network_data_format"][part].values():
                v["spatial_shape"] = list(over["spatial_size"])
    atomic_write_json(dest / "configs" / "metadata.json", meta, indent=4)
    model = dest / "models" / "model.pt"
    if weights is not None and not model.exists():
        atomic_copy(weights, model)
        logger.info("bone segmentation bundle for MONAI Label at %s, initial weights from %s", dest, weights)
    return dest


def read_bone_bundle(bundle: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, tuple]:
    """The OT multi-decoder U-Net of a segmentation bundle folder (``models/model.pt`` loaded) and its input size."""
    parser = ConfigParser()
    parser.read_config(str(Path(bundle) / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    network = parser.get_parsed_content("network_def#net", instantiate=True)
    load_network_weights(network, Path(bundle) / "models" / "model.pt", device)
    return network.to(device).eval(), tuple(parser.get_parsed_content("spatial_size"))


@torch.no_grad()
def bone_uncertainty(network: torch.nn.Module, image: torch.Tensor, spatial_size: Sequence[int],
                     num_samples: int | None = None, seed: int = 0) -> float:
    """Epistemic uncertainty of a radiograph's bone segmentation: mean mutual information inside the bones.

    The mutual information between the label and the hypothesis (total predictive entropy minus the mean entropy
    of the K x S hypotheses of the multi-decoder U-Net, normalised by log C) is averaged over the pixels whose
    mixture-mean label is a bone; an image where no bone is found averages the whole image (a model that finds
    nothing is uncertain there, and such images should be labelled early). Active learning labels the highest
    first. MONAI Label's ``EpistemicScoring`` needs dropout sampling and a 3-D volume's variance; the multi-decoder
    U-Net's hypotheses give the mutual information directly. The latent samples are drawn from ``seed`` (the global
    random state is left as it was), so a score depends only on the image and the model.
    """
    from monai_osteo.engines.hand_osteo.segment import segment_radiograph

    network.eval()
    seg = segment_radiograph(network, torch.as_tensor(image).float(), spatial_size, uncertainty=True,
                             num_samples=num_samples, seed=seed)
    mi = seg["mutual_information"]
    bones = seg["prob"].argmax(0) > 0
    return float(mi[bones].mean() if bool(bones.any()) else mi.mean())


class HandScreener:
    """Screen one radiograph with a trained hand_osteo run, exactly as its ``inference.json`` does.

    The parts of ``inference.json`` (layered on ``train.json`` and the run's preset) are built once: preprocessing,
    the ``HandScreeningInferer``, the classifier, the gates and decision post-processing; the run's ``model.pt``,
    ``segmentation.pt`` and ``gates.pt`` are loaded from ``run_dir``. ``__call__(path)`` returns the bone label map
    on the radiograph's grid (uint8, 0 background, 1 ulna, 2 radius, 3-7 M1-M5) and the report that
    ``ScreeningReportWriter`` writes for it (decision, subject probability, per-bone probabilities, QC flags, gates,
    segmentation confidence and uncertainty summary).

    Args:
        run_dir: a hand_osteo run folder (``bash scripts/run.sh demo`` writes ``bundles/hand_osteo/runs/quick``).
        configs: the configs the run was trained with, after ``train.json`` (``("quick.json",)`` for the demo's run).
        device: torch device.
        overrides: further ``inference.json`` ids (e.g. ``{"threshold": 0.4}``).

    The classifier's input and features are taken from the run's ``run.json`` where it records them: ``inference.json``
    reads them (its ``recorded_settings`` id, :func:`recorded_settings`: ``patch_size``, ``patch_normalization``,
    ``feature_pooling``), so a run screens with what its probe was trained on whatever ``configs`` say. To screen
    otherwise, override ``recorded_settings`` (``{}``: the configs decide).
    """

    def __init__(self, run_dir: str | os.PathLike, configs: Sequence[str] = ("quick.json",),
                 device: str | torch.device = "cpu", overrides: Mapping[str, object] | None = None) -> None:
        self.run_dir = Path(run_dir)
        for name in ("model.pt", "segmentation.pt"):
            if not (self.run_dir / name).is_file():
                raise FileNotFoundError(
                    f"{self.run_dir / name} is missing: screening needs a trained hand_osteo run; train one with "
                    "`bash scripts/run.sh demo` (writes bundles/hand_osteo/runs/quick) or point at another run folder.")
        root = Path(find_bundle_root("hand_osteo")) / "configs"
        files = [str(root / "train.json"), *(str(root / c) for c in configs), str(root / "inference.json")]
        self.parser = ConfigParser()
        self.parser.read_config(files)
        self.parser.update({"models_dir": str(self.run_dir), "device": str(device), "dataset_dir": [],
                            **dict(overrides or {})})
        self.device = torch.device(device)
        self.preprocessing = self.parser.get_parsed_content("preprocessing")
        self.network = load_network_weights(self.parser.get_parsed_content("network"), self.run_dir / "model.pt",
                                            self.device).eval()
        self.segmentation = load_network_weights(self.parser.get_parsed_content("segmentation"),
                                                 self.run_dir / "segmentation.pt", self.device).eval()
        self.inferer = self.parser.get_parsed_content("inferer")
        self.postprocessing = self.parser.get_parsed_content("postprocessing")
        self.seed = int(self.parser.get_parsed_content("seed"))

    @torch.no_grad()
    def __call__(self, path: str | os.PathLike) -> tuple[np.ndarray, dict]:
        from monai_osteo.handlers.screening_report_writer import screening_report

        t0 = time.perf_counter()
        item = {"image": str(path), "source": str(path), "index": 0}
        try:
            batch = list_data_collate([self.preprocessing(item)])
        except Exception as e:  # the reader's message names the fix; never the file's name (patient names)
            raise ValueError(redact(f"cannot read the radiograph: {e}", str(path))) from None
        pred = self.inferer(batch["image"].to(self.device), self.network)
        out = self.postprocessing({"image": batch["image"], "pred": pred})
        res = out["pred"][0]
        report = screening_report(res, output_id(str(path), 0), time.perf_counter() - t0)
        return np.asarray(res["labels"], dtype=np.uint8), report
