"""A few test predictions saved for the report's overlay figure (image, ground truth, prediction)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from monai_osteo.io import atomic_write

__all__ = ["save_examples"]


def save_examples(network: torch.nn.Module, dataset, count: int, path: str | os.PathLike,
                  device: str | torch.device = "cpu") -> Path | None:
    """Run ``network`` on the first ``count`` items of ``dataset`` and save ``image``, ``label``, ``pred``
    (sigmoid > 0.5) as one ``.npz``, written atomically under a unique temporary name (safe when several ranks write
    it). Returns the path, or None when ``count`` is 0."""
    if count <= 0:
        return None
    images, labels, preds = [], [], []
    network.eval()
    with torch.no_grad():
        for i in range(min(count, len(dataset))):
            item = dataset[i]
            x = torch.as_tensor(item["image"]).float()[None].to(device)
            p = torch.sigmoid(network(x))[0, 0] > 0.5
            images.append(x[0].cpu().numpy().astype(np.float32))
            labels.append(np.asarray(torch.as_tensor(item["label"])[0].cpu()) > 0.5 if "label" in item else
                          np.zeros(p.shape, bool))
            preds.append(p.cpu().numpy())
    arrays = {"image": np.stack(images), "label": np.stack(labels), "pred": np.stack(preds)}
    return atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))
