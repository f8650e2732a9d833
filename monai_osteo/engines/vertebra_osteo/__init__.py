"""vertebra_osteo workflows: batches, outputs and metrics of fine-tuning/evaluation, network preparation.

- [0] Huang et al., TP-SwAV + MoE (``papers/vertebral_ct_tpswav_moe.txt``) §2-3.
"""

from monai_osteo.engines.vertebra_osteo.batch import (
    VertebraBatch,
    bmd_output,
    mean_abs_error,
    positive_f1,
    safe_auc,
    screening_output,
    targets_of,
)
from monai_osteo.engines.vertebra_osteo.network import prepare_network

__all__ = [
    "VertebraBatch",
    "bmd_output",
    "mean_abs_error",
    "positive_f1",
    "prepare_network",
    "safe_auc",
    "screening_output",
    "targets_of",
]
