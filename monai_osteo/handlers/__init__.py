"""Ignite handlers."""

from monai_osteo.handlers.bone_patch_writer import BonePatchWriter
from monai_osteo.handlers.checkpoint import AtomicCheckpointSaver, last_checkpoint
from monai_osteo.handlers.class_probability_writer import ClassProbabilityWriter
from monai_osteo.handlers.consistency_rampup import ConsistencyRampupHandler, sigmoid_rampup
from monai_osteo.handlers.embedding_monitor import EmbeddingProbeMonitor, subject_auc
from monai_osteo.handlers.gamma_annealing import GammaAnnealingHandler, gamma_schedule
from monai_osteo.handlers.screening_gate_fitter import ScreeningGateFitter
from monai_osteo.handlers.screening_report_writer import ScreeningReportWriter
from monai_osteo.handlers.teacher_momentum import TeacherMomentumHandler
from monai_osteo.handlers.vertebra_predictions import VertebraPredictionWriter, predicted_t_score
from monai_osteo.handlers.vertebra_report_writer import VertebraReportWriter

__all__ = [
    "ClassProbabilityWriter",
    "AtomicCheckpointSaver",
    "BonePatchWriter",
    "ConsistencyRampupHandler",
    "EmbeddingProbeMonitor",
    "GammaAnnealingHandler",
    "ScreeningGateFitter",
    "ScreeningReportWriter",
    "TeacherMomentumHandler",
    "VertebraPredictionWriter",
    "VertebraReportWriter",
    "gamma_schedule",
    "last_checkpoint",
    "predicted_t_score",
    "sigmoid_rampup",
    "subject_auc",
]
