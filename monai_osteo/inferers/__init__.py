"""Inferers: how a workflow turns its inputs into predictions when that is more than one network call."""

from monai_osteo.inferers.hand_screening import HandScreeningInferer

__all__ = ["HandScreeningInferer"]
