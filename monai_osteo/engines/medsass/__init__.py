"""MedSASS: U-Net self-supervised on per-image Otsu pseudo-masks (Algorithm 1), its transfer and its references.

- [0] Singh & Cirrone, MedSASS (Exploring intrinsic properties of medical images for self-supervised binary
  semantic segmentation), §3.3, Algorithm 1.
"""

from monai_osteo.engines.medsass.examples import save_examples
from monai_osteo.engines.medsass.pseudo_labels import FixedThresholdMask, OtsuPseudoLabelBatch, make_pseudo_masker
from monai_osteo.engines.medsass.references import AllForegroundPredictor, PseudoMaskPredictor
from monai_osteo.engines.medsass.transfer import TRANSFER_MODES, load_checkpoint_state, prepare_network

__all__ = [
    "TRANSFER_MODES",
    "AllForegroundPredictor",
    "FixedThresholdMask",
    "OtsuPseudoLabelBatch",
    "PseudoMaskPredictor",
    "load_checkpoint_state",
    "make_pseudo_masker",
    "prepare_network",
    "save_examples",
]
