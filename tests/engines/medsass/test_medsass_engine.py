"""MedSASS engine pieces: Otsu pseudo-labels in prepare_batch (polarity, channels, device), references, transfer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from skimage.filters import threshold_otsu

from monai_osteo.engines.medsass import (
    AllForegroundPredictor,
    OtsuPseudoLabelBatch,
    PseudoMaskPredictor,
    load_checkpoint_state,
    prepare_network,
    save_examples,
)
from monai_osteo.networks.nets import ResNetUNet
from tests.utils import assert_allclose

TINY = {"backbone": "resnet18", "decoder_channels": (16, 8, 4)}


def _blobs(n: int = 4, size: int = 32, dark: bool = False, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB images with one disc each (bright on dark, or dark on bright) + noise, and the disc masks."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    imgs, masks = [], []
    for _ in range(n):
        cy, cx = torch.randint(8, size - 8, (2,), generator=g)
        m = ((yy - cy) ** 2 + (xx - cx) ** 2 < 36).float()
        base = 0.2 + 0.6 * m if not dark else 0.8 - 0.6 * m
        imgs.append(base.expand(3, size, size) + 0.005 * torch.randn(3, size, size, generator=g))
        masks.append(m[None])
    return torch.stack(imgs), torch.stack(masks)


def test_pseudo_labels_equal_skimage_otsu_per_image_and_follow_the_polarity():
    imgs, masks = _blobs(dark=True)
    image, label = OtsuPseudoLabelBatch(foreground="dark")({"image": imgs})
    assert image.shape == (4, 3, 32, 32) and label.shape == (4, 1, 32, 32) and not label.requires_grad
    gray = (imgs * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).double().numpy()
    for i in range(4):
        expected = -gray[i] > threshold_otsu(-gray[i])  # dark polarity: the bright mask of the negated image
        assert np.array_equal(label[i, 0].numpy() > 0, expected)
    assert (label != masks).float().mean() < 0.01  # the planted dark discs (Otsu may take a few tail pixels)
    _, bright = OtsuPseudoLabelBatch(foreground="bright")({"image": imgs})
    for i in range(4):
        assert np.array_equal(bright[i, 0].numpy() > 0, gray[i] > threshold_otsu(gray[i]))
    assert (bright == masks).float().mean() < 0.01  # wrong polarity marks the background (the control)


def test_pseudo_labels_on_one_channel_ignore_the_others():
    imgs, masks = _blobs()
    noisy = imgs.clone()
    noisy[:, :2] = torch.rand(4, 2, 32, 32)  # red and green carry no object
    _, on_blue = OtsuPseudoLabelBatch(channels=[2])({"image": noisy})
    _, on_gray = OtsuPseudoLabelBatch()({"image": noisy})
    assert (on_blue != masks).float().mean() < 0.01
    assert (on_gray != masks).float().mean() > 0.05
    with pytest.raises(ValueError, match="otsu_channels"):
        OtsuPseudoLabelBatch(channels=[5])({"image": noisy})
    with pytest.raises(ValueError, match="must contain 'image'"):
        OtsuPseudoLabelBatch()({"img": noisy})


def test_trainer_learns_from_pseudo_labels_only():
    """A SupervisedTrainer with the pseudo-label prepare_batch fits the Otsu masks (no label in the batch)."""
    torch.manual_seed(0)
    imgs, masks = _blobs(8, seed=1)
    net = ResNetUNet(2, 3, 1, **TINY)
    from monai_osteo.losses import FocalTverskyLoss

    loss = FocalTverskyLoss(sigmoid=True)
    losses = []
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=60, train_data_loader=[{"image": imgs}],
                                network=net, optimizer=torch.optim.Adam(net.parameters(), 1e-2), loss_function=loss,
                                prepare_batch=OtsuPseudoLabelBatch(), decollate=False)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    assert losses[-1] < 0.3 * losses[0]
    net.eval()
    with torch.no_grad():
        pred = (torch.sigmoid(net(imgs)) > 0.5).float()
    iou = (pred * masks).sum() / ((pred + masks) > 0).sum()
    assert iou > 0.6


def test_reference_predictors():
    imgs, masks = _blobs()
    allfg = torch.sigmoid(AllForegroundPredictor()(imgs))
    assert allfg.shape == (4, 1, 32, 32) and bool((allfg > 0.99).all())
    otsu = torch.sigmoid(PseudoMaskPredictor()(imgs)) > 0.5
    assert_allclose(otsu.float(), OtsuPseudoLabelBatch()({"image": imgs})[1])


def test_prepare_network_transfers_encoder_or_whole_net_and_freezes(tmp_path):
    torch.manual_seed(0)
    src = ResNetUNet(2, 3, 1, **TINY)
    torch.save(src.state_dict(), tmp_path / "model.pt")
    torch.save({"model": src.state_dict(), "optimizer": {}}, tmp_path / "last.pt")
    enc = prepare_network(ResNetUNet(2, 3, 1, **TINY), "encoder", tmp_path / "model.pt")
    full = prepare_network(ResNetUNet(2, 3, 1, **TINY), "full", tmp_path / "last.pt")
    s, e, f = src.state_dict(), enc.state_dict(), full.state_dict()
    differ = {k for k in s if not torch.equal(s[k], e[k])}
    assert differ and all(k.startswith(("decoder.", "head.")) for k in differ)  # only the decoder is new
    assert all(torch.equal(s[k], f[k]) for k in s)
    frozen = prepare_network(ResNetUNet(2, 3, 1, **TINY), "encoder", tmp_path / "model.pt", freeze_encoder=True)
    frozen.train()
    assert not frozen.encoder.training and frozen.decoder.training
    assert not any(p.requires_grad for p in frozen.encoder.parameters())
    before = {k: v.clone() for k, v in frozen.encoder.state_dict().items()}
    frozen(torch.randn(2, 3, 32, 32))  # batch-norm statistics must not move either
    assert all(torch.equal(before[k], v) for k, v in frozen.encoder.state_dict().items())
    with pytest.raises(FileNotFoundError, match="pre-training stage"):
        load_checkpoint_state(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="init_checkpoint"):
        prepare_network(ResNetUNet(2, 3, 1, **TINY), "full", None)
    with pytest.raises(ValueError, match="transfer must be"):
        prepare_network(ResNetUNet(2, 3, 1, **TINY), "decoder")


def test_save_examples_writes_image_label_prediction(tmp_path):
    imgs, masks = _blobs(3)
    data = [{"image": imgs[i], "label": masks[i]} for i in range(3)]
    path = save_examples(PseudoMaskPredictor(), data, 2, tmp_path / "ex.npz")
    with np.load(path) as z:
        assert z["image"].shape == (2, 3, 32, 32) and z["label"].shape == z["pred"].shape == (2, 32, 32)
        assert np.mean(z["pred"] != z["label"]) < 0.01
    assert save_examples(PseudoMaskPredictor(), data, 0, tmp_path / "none.npz") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex.npz"]


def test_fixed_global_threshold_ablation():
    """One threshold for all images: right where the contrast sits at it, wrong where the image is darker."""
    from monai_osteo.engines.medsass import FixedThresholdMask

    imgs, masks = _blobs()
    _, fixed = OtsuPseudoLabelBatch(method="fixed", threshold_kwargs={"threshold": 0.5})({"image": imgs})
    assert (fixed != masks).float().mean() < 0.01
    dim = imgs * 0.5  # the same images, darker: Otsu adapts, a fixed threshold marks nothing
    _, fixed_dim = OtsuPseudoLabelBatch(method="fixed", threshold_kwargs={"threshold": 0.5})({"image": dim})
    _, otsu_dim = OtsuPseudoLabelBatch()({"image": dim})
    assert fixed_dim.sum() == 0 and (otsu_dim != masks).float().mean() < 0.01
    dark = FixedThresholdMask(0.5, "dark")(imgs)
    assert torch.equal(dark, 1 - fixed)
    minority = FixedThresholdMask(0.5, "minority")(torch.cat([imgs, 1 - imgs]))
    assert torch.equal(minority, torch.cat([masks, masks]))
    with pytest.raises(ValueError, match="foreground must be"):
        FixedThresholdMask(0.5, "both")
