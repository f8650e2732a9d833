"""The hand_osteo pipeline stages (segmentation -> bone patches -> SSL -> linear probe), evaluation and screening.

The bundle ``bundles/hand_osteo`` builds these from its configs; each stage also runs on its own.

- [0] hand_xray_osteoporosis_journal (Figs. 1-4, Eq. 10, Tables 3-7).
"""

from monai_osteo.engines.hand_osteo.bundle_utils import find_bundle_root, list_radiographs, write_run_manifest
from monai_osteo.engines.hand_osteo.common import BONES, atomic_save, atomic_write_json, resolve_datalist
from monai_osteo.engines.hand_osteo.datasets import BonePatchDataset, LoadBonePatchd, ShuffleSampler
from monai_osteo.engines.hand_osteo.evaluation import ScreeningEvaluation
from monai_osteo.engines.hand_osteo.patch_stage import BonePatchStage
from monai_osteo.engines.hand_osteo.probe_stage import LinearProbeStage, probe_transform
from monai_osteo.engines.hand_osteo.screening import HandScreener, ScreeningRunner
from monai_osteo.engines.hand_osteo.segment import segment_radiograph
from monai_osteo.engines.hand_osteo.segmentation_stage import SegmentationStage
from monai_osteo.engines.hand_osteo.ssl_stage import SSLStage

__all__ = [
    "BONES",
    "BonePatchDataset",
    "BonePatchStage",
    "HandScreener",
    "LinearProbeStage",
    "LoadBonePatchd",
    "SSLStage",
    "ScreeningEvaluation",
    "ScreeningRunner",
    "SegmentationStage",
    "ShuffleSampler",
    "atomic_save",
    "atomic_write_json",
    "find_bundle_root",
    "list_radiographs",
    "probe_transform",
    "resolve_datalist",
    "segment_radiograph",
    "write_run_manifest",
]
