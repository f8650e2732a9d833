"""MultiDecoderOTUNet: output contract (shapes, alpha, mixture mean, uncertainty), one decoder pass per module,
shared-decoder and single-decoder variants, deterministic path, TorchScript (script and trace) equality, errors."""

from __future__ import annotations

import warnings

import pytest
import torch

from monai_osteo.networks.nets import MixtureMeanUNet, MultiDecoderOTUNet
from tests.utils import assert_allclose

TINY = dict(channels=(4, 8, 16), out_channels=3, head_channels=4, router_hidden=4)
VARIANTS = {
    "multi": dict(num_decoders=3, num_samples=2, latent_dim=2),
    "shared": dict(num_decoders=3, num_samples=2, latent_dim=2, shared_decoder=True),
    "single": dict(num_decoders=1, num_samples=1, latent_dim=0),
}


def make(variant: str, **kw) -> MultiDecoderOTUNet:
    torch.manual_seed(0)
    return MultiDecoderOTUNet(spatial_dims=2, in_channels=1, **{**TINY, **VARIANTS[variant], **kw})


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_output_contract(variant):
    net = make(variant)
    k, s = net.num_decoders, net.num_samples
    out = net(torch.randn(2, 1, 32, 32))
    assert out["logits"].shape == (2, k, s, 3, 32, 32)
    assert out["alpha"].shape == (2, k, s) and out["router"].shape == (2, k)
    assert out["mean_prob"].shape == (2, 3, 32, 32)
    assert out["uncertainty"].shape == out["mutual_information"].shape == (2, 1, 32, 32)
    assert_allclose(out["alpha"].sum((1, 2)), torch.ones(2), atol=1e-6)
    assert_allclose(out["alpha"], out["router"][:, :, None].expand(2, k, s) / s, atol=1e-7)
    assert_allclose(out["mean_prob"].sum(1), torch.ones(2, 32, 32), atol=1e-5)
    manual = (out["alpha"][..., None, None, None] * torch.softmax(out["logits"], 3)).sum((1, 2))
    assert_allclose(out["mean_prob"], manual, atol=1e-6)
    u, mi = out["uncertainty"], out["mutual_information"]
    assert u.min() >= 0 and u.max() <= 1 and mi.min() >= 0 and (mi <= u + 1e-6).all()


def test_samples_differ_and_num_samples_override():
    net = make("multi")
    x = torch.randn(1, 1, 16, 16)
    logits = net(x)["logits"]
    assert (logits[0, 0, 0] - logits[0, 0, 1]).abs().max() > 1e-4  # latent samples give different hypotheses
    assert (logits[0, 0, 0] - logits[0, 1, 0]).abs().max() > 1e-4  # modules differ
    out = net(x, num_samples=5, with_uncertainty=False)
    assert out["logits"].shape == (1, 3, 5, 3, 16, 16) and "uncertainty" not in out
    assert_allclose(out["alpha"], out["router"][:, :, None].expand(1, 3, 5) / 5, atol=1e-7)
    torch.manual_seed(3)
    a = net(x)["logits"]
    torch.manual_seed(3)
    assert_allclose(net(x)["logits"], a)  # seeded reproducibility


@pytest.mark.parametrize("variant, calls", [("multi", 3), ("shared", 1), ("single", 1)])
def test_one_decoder_pass_per_module(variant, calls):
    net = make(variant)
    seen = []
    for branch in net.branches:
        branch.decoder.register_forward_hook(lambda *_: seen.append(1))
    net(torch.randn(1, 1, 16, 16), num_samples=4)
    assert len(seen) == calls  # never once per sample


def test_shared_and_single_decoder_parameters():
    multi, shared, single = make("multi"), make("shared"), make("single")
    assert len(multi.branches) == 3 and len(shared.branches) == 1
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(shared) < count(multi)
    names = [n for n, _ in single.named_parameters()]
    assert single.latent is None and single.router is None
    assert not any(w in n for n in names for w in ("latent", "router", "modulation"))
    out = single(torch.randn(2, 1, 16, 16), num_samples=3)  # deterministic: S identical copies
    assert_allclose(out["router"], torch.ones(2, 1))
    assert_allclose(out["logits"][:, :, 0], out["logits"][:, :, 2])
    assert_allclose(out["mutual_information"], torch.zeros(2, 1, 16, 16), atol=1e-6)


def test_uncertainty_zero_when_confident_and_deterministic():
    net = make("single")
    last = net.branches[0].head[-1].conv
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([60.0, 0.0, 0.0]))
    out = net(torch.randn(1, 1, 16, 16))
    assert_allclose(out["uncertainty"], torch.zeros(1, 1, 16, 16), atol=1e-6)
    with torch.no_grad():
        last.bias.zero_()  # uniform prediction: maximal entropy
    assert_allclose(net(torch.randn(1, 1, 16, 16))["uncertainty"], torch.ones(1, 1, 16, 16), atol=1e-6)


def test_predict_mean_is_the_mean_with_latent_means():
    net = make("multi").eval()
    x = torch.randn(2, 1, 16, 16)
    mean = net.predict_mean(x)
    assert_allclose(mean, net.predict_mean(x))
    assert_allclose(mean.sum(1), torch.ones(2, 16, 16), atol=1e-5)
    with torch.no_grad():
        net.latent.log_sigma.fill_(-40.0)  # samples collapse onto mu_k
    assert_allclose(net(x)["mean_prob"], mean, atol=1e-6)


def test_router_starts_uniform_and_gradients_reach_all_parts():
    net = make("multi")
    x = torch.randn(2, 1, 16, 16)
    assert_allclose(net(x)["router"], torch.full((2, 3), 1 / 3), atol=1e-7)  # zero-initialised last router layer
    with torch.no_grad():
        net.router.mlp[-1].weight.normal_()  # as after a first step: gradients then reach the hidden layer too
    out = net(x)
    (out["logits"].square().mean() + out["alpha"].square().sum()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_torchscript_script_and_trace_equal_eager(variant):
    model = MixtureMeanUNet(make(variant)).eval()
    x, x2 = torch.randn(2, 1, 32, 32), torch.randn(1, 1, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
        traced = torch.jit.trace(model, x)
        full = torch.jit.script(model.net)  # the sampling forward is scriptable as well
    with torch.no_grad():
        for inp in (x, x2):
            expected = model(inp)
            assert_allclose(scripted(inp), expected, atol=1e-6)
            assert_allclose(traced(inp), expected, atol=1e-6)
        assert full(x, 2)["logits"].shape[2] == 2


def test_mixture_mean_loads_bare_checkpoint():
    trained, fresh = make("multi"), MultiDecoderOTUNet(**{**TINY, **VARIANTS["multi"]})
    wrapper = MixtureMeanUNet(fresh)
    wrapper.load_state_dict(trained.state_dict())
    x = torch.randn(1, 1, 16, 16)
    assert_allclose(wrapper(x), trained.predict_mean(x))
    wrapper.load_state_dict(MixtureMeanUNet(trained).state_dict())  # its own keys still load


def test_spatial_3d():
    net = MultiDecoderOTUNet(spatial_dims=3, **{**TINY, "channels": (2, 4)}, num_decoders=2, num_samples=2,
                             latent_dim=2)
    out = net(torch.randn(1, 1, 8, 8, 8))
    assert out["logits"].shape == (1, 2, 2, 3, 8, 8, 8) and net.predict_mean(torch.randn(1, 1, 8, 8, 8)).shape[1] == 3


def test_errors():
    net = make("multi")
    with pytest.raises(ValueError, match=r"divisible by 2\*\*\(len\(channels\)-1\) = 4"):
        net(torch.randn(1, 1, 18, 16))
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(1, 2, 16, 16))
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        net(torch.randn(1, 1, 16, 16), num_samples=0)
    with pytest.raises(ValueError, match="shared_decoder=True with latent_dim=0"):
        MultiDecoderOTUNet(**TINY, num_decoders=2, latent_dim=0, shared_decoder=True)
    with pytest.raises(ValueError, match="out_channels must be >= 2"):
        MultiDecoderOTUNet(**{**TINY, "out_channels": 1})
    with pytest.raises(ValueError, match="net must be a MultiDecoderOTUNet"):
        MixtureMeanUNet(torch.nn.Identity())
