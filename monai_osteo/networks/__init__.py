"""Networks (``nets``) and their building blocks (``blocks``)."""

from monai_osteo.networks import blocks, nets

__all__ = ["blocks", "nets"]
