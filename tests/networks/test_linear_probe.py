"""LinearProbe: cumulative training statistics; folded() is the one Linear layer equal to the probe in eval mode."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from monai_osteo.networks.nets.linear_probe import LinearProbe
from tests.utils import assert_allclose


def _train(probe, batches):
    probe.train()
    for x in batches:
        probe(x)
    return probe.eval()


def _batches(n=4, b=16, f=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.5, 5.0, f)
    return [torch.randn(b, f, generator=g) * scale + torch.arange(f) * 3.0 for _ in range(n)]


@pytest.mark.parametrize("in_features, out_channels", [(6, 2), (6, 5)])
def test_folded_equals_probe_in_eval(in_features, out_channels):
    torch.manual_seed(0)
    probe = _train(LinearProbe(in_features, out_channels), _batches(f=in_features))
    x = torch.randn(7, in_features) * 4 + 2
    w, b = probe.folded()
    assert w.shape == (out_channels, in_features) and b.shape == (out_channels,)
    with torch.no_grad():
        expected = probe(x)
    assert_allclose(F.linear(x, w, b), expected, atol=1e-5, rtol=1e-5)
    assert not w.requires_grad and not b.requires_grad
    w.zero_()  # a copy: the probe's own parameters are untouched
    assert probe.fc.weight.abs().sum() > 0


def test_running_stats_are_cumulative_average_of_training_batches():
    batches = _batches(n=5)
    probe = _train(LinearProbe(6, 2), batches)
    stacked = torch.stack(batches)
    assert_allclose(probe.norm.running_mean, stacked.mean(dim=(0, 1)), rtol=1e-5, atol=1e-5)  # = mean of all
    assert_allclose(probe.norm.running_var, stacked.var(dim=1, unbiased=True).mean(0), rtol=1e-5)
    assert int(probe.norm.num_batches_tracked) == 5
    # eval mode standardises with these training statistics
    x = torch.randn(3, 6)
    with torch.no_grad():
        expected = probe.fc((x - probe.norm.running_mean) / (probe.norm.running_var + probe.norm.eps).sqrt())
        assert_allclose(probe(x), expected, atol=1e-6)


def test_eval_does_not_update_statistics():
    probe = _train(LinearProbe(6, 2), _batches(n=2))
    mean, var = probe.norm.running_mean.clone(), probe.norm.running_var.clone()
    with torch.no_grad():
        probe(torch.randn(8, 6) + 100)
    assert torch.equal(probe.norm.running_mean, mean) and torch.equal(probe.norm.running_var, var)


def test_gradients_reach_the_linear_layer_only():
    probe = LinearProbe(4, 3).train()
    x = torch.randn(8, 4, requires_grad=True)
    probe(x).sum().backward()
    assert probe.fc.weight.grad is not None and probe.fc.weight.grad.abs().sum() > 0
    assert list(probe.norm.parameters()) == []  # no affine parameters in the normalisation


@pytest.mark.parametrize("args", [(0, 2), (4, 0), (-1, 2)])
def test_bad_args(args):
    with pytest.raises(ValueError, match=re.escape(f"in_features and out_channels must be >= 1, got {args[0]!r}, "
                                                   f"{args[1]!r}")):
        LinearProbe(*args)
