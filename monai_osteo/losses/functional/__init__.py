"""Pure functions of the losses: OT costs, exact capacity-constrained coupling, KL term."""

from monai_osteo.losses.functional.ot import (
    batch_capacity_constrained_coupling,
    capacity_constrained_coupling,
    cross_entropy_cost,
    kl_divergence,
    one_hot_flat,
    soft_iou_cost,
)

__all__ = [
    "batch_capacity_constrained_coupling", "capacity_constrained_coupling", "cross_entropy_cost", "kl_divergence",
    "one_hot_flat", "soft_iou_cost",
]
