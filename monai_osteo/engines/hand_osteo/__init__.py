"""hand_osteo evaluation (metrics over trained runs) and the segmentation of one radiograph.

The training stages are the standard MONAI workflows of ``bundles/hand_osteo/configs`` (see its docs).

- [0] hand_xray_osteoporosis_journal (Figs. 1-4, Eq. 10, Tables 3-7).
"""

from monai_osteo.engines.hand_osteo.evaluation import ScreeningEvaluation, format_table, run_names
from monai_osteo.engines.hand_osteo.segment import letterbox, segment_radiograph

__all__ = ["ScreeningEvaluation", "format_table", "letterbox", "run_names", "segment_radiograph"]
