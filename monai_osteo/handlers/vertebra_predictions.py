"""Per-vertebra predictions of an evaluator, written as a table, and the paper's per-site metrics.

- [0] Huang et al., TP-SwAV + MoE (``papers/vertebral_ct_tpswav_moe.txt``) §3.1-3.2 (vertebra- and patient-level
  ACC/SEN/SPE/F1 per site, BMD regression, position classification).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_osteo.io import atomic_write_json, atomic_write_text
from monai_osteo.networks.nets.vertebra_net import split_vertebra_output

__all__ = ["VertebraPredictionWriter", "predicted_t_score", "PREDICTION_COLUMNS"]

logger = logging.getLogger("monai_osteo.handlers")

#: columns of ``predictions.csv`` before the gate weights (``gate_0`` ...)
PREDICTION_COLUMNS = ("uid", "patient", "site", "dxa_device", "level", "label", "prob", "pred", "bmd", "bmd_pred",
                      "t_score", "t_pred", "position", "position_pred")


def predicted_t_score(bmd: float, device: str, level: str, references: Mapping[str, Mapping[str, float]],
                      level_scale: Mapping[str, float] | None = None) -> float:
    """T-score of a predicted BMD against the device's young-adult reference (``ref_mean``, ``ref_sd``), scaled
    per DXA level by ``level_scale`` (1 for levels it does not list); NaN for an unknown device."""
    ref = references.get(device)
    if ref is None:
        return float("nan")
    s = float((level_scale or {}).get(level, 1.0))
    return (float(bmd) - float(ref["ref_mean"]) * s) / (float(ref["ref_sd"]) * s)


def _column(batch: Mapping, key: str, n: int, default) -> list:
    v = batch.get(key)
    if v is None:
        return [default] * n
    if isinstance(v, torch.Tensor):
        return v.reshape(-1).tolist()
    return list(v)


class VertebraPredictionWriter:
    """Collect one row per vertebra during an evaluation; at its end write ``predictions.csv`` and ``metrics.json``.

    Rows come from the engine's batch (``uid``, ``patient``, ``site``, ``dxa_device``, ``level``, ``bmd``,
    ``t_score``, ``target``) and its output ``pred`` (class logits | standardised BMD | position logits | gate).
    ``metrics.json``: :func:`~monai_osteo.metrics.site_metrics` (vertebra and patient level, per site and pooled,
    patients by the paper's any-positive rule), :func:`~monai_osteo.metrics.bmd_agreement` in g/cm² per device,
    the position accuracy, and the mean gate weights per device. The pooled vertebra F1 and AUC are also put in
    ``engine.state.metrics`` (``{prefix}_f1``, ``{prefix}_auc``) for ``StatsHandler``/``MetricsSaver``.

    Args:
        output_dir: where ``predictions.csv`` and ``metrics.json`` go (written atomically).
        bmd_mean, bmd_std: the training BMD statistics the network's standardised BMD is undone with.
        device_references: ``{device: {"ref_mean", "ref_sd"}}`` for the predicted T-score.
        level_scale: per-level factor of the reference (DXA levels), see :func:`predicted_t_score`.
        threshold: decision threshold on the probability (0.5 = argmax, decision V12).
        num_classes, num_positions: the output layout.
        sites_order: order of the sites in the tables.
        prefix: prefix of the ``engine.state.metrics`` entries.
    """

    def __init__(self, output_dir: str | os.PathLike, bmd_mean: float = 0.0, bmd_std: float = 1.0,
                 device_references: Mapping[str, Mapping[str, float]] | None = None,
                 level_scale: Mapping[str, float] | None = None, threshold: float = 0.5, num_classes: int = 2,
                 num_positions: int = 18, sites_order: Sequence[str] | None = None, prefix: str = "test") -> None:
        self.output_dir = Path(output_dir)
        self.bmd_mean, self.bmd_std = float(bmd_mean), float(bmd_std)
        self.references = dict(device_references or {})
        self.level_scale = dict(level_scale or {})
        self.threshold = float(threshold)
        self.num_classes, self.num_positions = int(num_classes), int(num_positions)
        self.sites_order = sites_order
        self.prefix = prefix
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _collect(self, engine: Engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        if isinstance(output, list):
            raise ValueError("VertebraPredictionWriter needs the batch output (set decollate=False on the evaluator).")
        pred = output["pred"].detach().float().cpu()
        n = pred.shape[0]
        out = split_vertebra_output(pred, self.num_classes, self.num_positions)
        prob = torch.softmax(out["class"], dim=1)[:, 1].tolist()
        bmd_pred = (out["bmd"] * self.bmd_std + self.bmd_mean).tolist()
        pos_pred = (out["position"].argmax(dim=1) + 1).tolist()
        gates = out["gate"].tolist()
        target = batch.get("target")
        target = torch.as_tensor(target).float().reshape(n, -1) if target is not None else torch.full((n, 3), -1.0)
        cols = {k: _column(batch, k, n, "") for k in ("uid", "patient", "site", "dxa_device", "level")}
        bmd = _column(batch, "bmd", n, float("nan"))
        tsc = _column(batch, "t_score", n, float("nan"))
        for i in range(n):
            label = int(target[i, 0]) if target[i, 0] >= 0 else -1
            pos = int(target[i, 2]) + 1 if target[i, 2] >= 0 else 0
            row = {k: cols[k][i] for k in cols}
            row.update({"label": label, "prob": prob[i], "pred": int(prob[i] >= self.threshold),
                        "bmd": float(bmd[i]), "bmd_pred": bmd_pred[i], "t_score": float(tsc[i]),
                        "t_pred": predicted_t_score(bmd_pred[i], str(row["dxa_device"]), str(row["level"]),
                                                    self.references, self.level_scale),
                        "position": pos, "position_pred": int(pos_pred[i])})
            for j, g in enumerate(gates[i]):
                row[f"gate_{j}"] = g
            self.rows.append(row)

    def metrics(self) -> dict:
        """The metrics of the collected rows (see the class docstring)."""
        from monai_osteo.metrics import bmd_agreement, site_metrics

        labelled = [{"patient_id": r["patient"], "site": r["site"], "label": r["label"], "prob": r["prob"]}
                    for r in self.rows if r["label"] >= 0]
        out: dict = {"n_vertebrae": len(self.rows), "threshold": self.threshold}
        if labelled:
            order = None
            if self.sites_order is not None:
                order = [*self.sites_order, *sorted({r["site"] for r in labelled} - set(self.sites_order))]
            out.update(site_metrics(labelled, self.threshold, order))
        with_bmd = [r for r in self.rows if math.isfinite(r["bmd"])]
        if with_bmd:
            out["bmd"] = bmd_agreement([r["bmd"] for r in with_bmd], [r["bmd_pred"] for r in with_bmd],
                                       [r["dxa_device"] for r in with_bmd])
        with_pos = [r for r in self.rows if r["position"] > 0]
        if with_pos:
            out["position_accuracy"] = float(np.mean([r["position"] == r["position_pred"] for r in with_pos]))
        gate_cols = sorted(k for k in (self.rows[0] if self.rows else {}) if k.startswith("gate_"))
        if gate_cols:
            out["gate_mean"] = {d: [float(np.mean([r[g] for r in self.rows if r["dxa_device"] == d]))
                                    for g in gate_cols] for d in sorted({r["dxa_device"] for r in self.rows})}
        return out

    def _write(self, engine: Engine) -> None:
        metrics = self.metrics()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        if self.rows:
            writer = csv.DictWriter(buf, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        atomic_write_text(self.output_dir / "predictions.csv", buf.getvalue())
        atomic_write_json(self.output_dir / "metrics.json", metrics)
        pooled = metrics.get("vertebra", {}).get("pooled", {})
        if pooled:
            engine.state.metrics[f"{self.prefix}_f1"] = pooled["f1"]
            engine.state.metrics[f"{self.prefix}_auc"] = pooled["auc"]
            patient = metrics["patient"]["pooled"]
            logger.info("%s: vertebra F1 %.3f AUC %.3f, patient F1 %.3f AUC %.3f (%d vertebrae) -> %s", self.prefix,
                        pooled["f1"], pooled["auc"], patient["f1"], patient["auc"], pooled["n"], self.output_dir)
