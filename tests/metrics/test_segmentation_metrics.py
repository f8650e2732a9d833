from __future__ import annotations

import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot

from monai_osteo.metrics import (
    ConsensusDiceMetric,
    GEDMetric,
    consensus_labels,
    generalized_energy_distance,
    iou_distance,
    per_class_dice,
)
from tests.utils import assert_allclose


def test_consensus_is_the_weighted_vote():
    masks = torch.tensor([[[[1, 2]], [[1, 3]], [[0, 3]]]])  # (B=1, M=3, 1, 2)
    assert consensus_labels(masks, None, 4).tolist() == [[[1, 3]]]
    assert consensus_labels(masks, torch.tensor([[0.1, 0.1, 0.8]]), 4).tolist() == [[[0, 3]]]


def test_per_class_dice_matches_monai():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randint(0, 5, (3, 16, 16), generator=g), torch.randint(0, 5, (3, 16, 16), generator=g)
    ours = per_class_dice(pred, target, 5)
    ref = compute_dice(one_hot(pred[:, None], 5), one_hot(target[:, None], 5), include_background=False)
    assert_allclose(ours, ref, rtol=1e-6)
    empty = per_class_dice(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long), 3)
    assert torch.isnan(empty).all()


def test_iou_distance_and_ged_invariants():
    a = torch.zeros(1, 4, 4, dtype=torch.long)
    a[0, :2] = 1
    b = torch.zeros(1, 4, 4, dtype=torch.long)
    b[0, 2:] = 1
    c = a.clone()
    c[0, 1] = 0  # half of a's foreground
    assert iou_distance(a, a, 2).item() == 0.0 and iou_distance(a, b, 2).item() == 1.0
    assert abs(iou_distance(a, c, 2).item() - 0.5) < 1e-6
    ann = torch.cat([a, b])
    # the prediction that reproduces the annotator distribution has GED 0
    assert abs(generalized_energy_distance(ann, None, ann, None, 2).item()) < 1e-6
    # one deterministic prediction equal to one of two equally weighted, disjoint annotations:
    # 2 * (0 + 1) / 2 - 0 - (0.25 * 0 * 2 + 0.25 * 1 * 2) = 0.5
    assert abs(generalized_energy_distance(a, None, ann, None, 2).item() - 0.5) < 1e-6
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        s, y = torch.randint(0, 3, (4, 8, 8), generator=g), torch.randint(0, 3, (3, 8, 8), generator=g)
        assert generalized_energy_distance(s, None, y, None, 3).item() >= -1e-6


def test_cumulative_metrics_aggregate():
    masks = torch.randint(0, 3, (2, 3, 8, 8), generator=torch.Generator().manual_seed(2))
    weights = torch.full((2, 3), 1 / 3)
    target = consensus_labels(masks, weights, 3)
    perfect = one_hot(target[:, None], 3).float()
    dice = ConsensusDiceMetric(3)
    dice(perfect, {"masks": masks, "weights": weights})
    assert abs(float(dice.aggregate()) - 1.0) < 1e-6
    ged = GEDMetric(3)
    ged({"samples": masks, "alpha": weights}, {"masks": masks, "weights": weights})
    assert abs(float(ged.aggregate())) < 1e-6
