"""hand_osteo evaluation (metrics over trained runs, the classical 2MCI baseline) and the segmentation of a radiograph.

The training stages are the standard MONAI workflows of ``bundles/hand_osteo/configs`` (see its docs).

- [0] hand_xray_osteoporosis_journal (Figs. 1-4, Eq. 10, Tables 3-7).
"""

from monai_osteo.engines.hand_osteo.baseline import cortical_index_baseline
from monai_osteo.engines.hand_osteo.evaluation import (
    ScreeningEvaluation,
    format_table,
    paired_auc_difference,
    run_names,
)
from monai_osteo.engines.hand_osteo.segment import letterbox, segment_radiograph

__all__ = ["ScreeningEvaluation", "cortical_index_baseline", "format_table", "letterbox", "paired_auc_difference",
           "run_names", "segment_radiograph"]
