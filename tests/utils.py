"""Shared test helpers (MONAI's own test utilities are not installed with MONAI)."""

from __future__ import annotations

import numpy as np
import torch


def assert_allclose(actual, desired, rtol: float = 1e-7, atol: float = 0.0, msg: str = "") -> None:
    """Raise AssertionError unless ``actual`` and ``desired`` (arrays or tensors) agree elementwise."""
    a = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    d = desired.detach().cpu().numpy() if isinstance(desired, torch.Tensor) else np.asarray(desired)
    np.testing.assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=msg)
