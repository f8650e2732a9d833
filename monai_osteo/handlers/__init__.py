"""Ignite handlers."""

from monai_osteo.handlers.gamma_annealing import GammaAnnealingHandler, gamma_schedule

__all__ = ["GammaAnnealingHandler", "gamma_schedule"]
