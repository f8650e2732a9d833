"""Dermoscopy phantom (ISIC-2017 analogue): determinism, datalist contract, caching, and honesty checks.

Honesty checks (specs/wave2.md §5.5, §6.1), each with a control that can fail:
1. global colour statistics stay near chance for the 3 classes while lesion features computed from the mask
   do much better (and the same lesion model on shuffled labels is at chance);
2. Otsu with a dark foreground finds the lesion partly (IoU in a band that leaves room to learn); a bright
   foreground does not;
3. the all-foreground IoU equals the mean lesion area fraction, in [0.15, 0.35];
4. a small supervised U-Net learns the masks: test IoU clearly above the Otsu-dark IoU.
Run with ``-s`` to see the measured figures.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from monai_osteo.data.phantoms import skin as skin_module
from monai_osteo.data.phantoms.skin import (
    SKIN_CLASSES,
    SKIN_PRESETS,
    ensure_skin_cohort,
    generate_skin_cohort,
    render_skin,
)
from monai_osteo.transforms.otsu.array import OtsuPseudoMask

GRAY = np.array([0.299, 0.587, 0.114])
SPLITS = ("training", "validation", "test")
STEPS = 200  # U-Net training steps (batch 16, 64 px): ~15 s on one CPU thread


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("skin_tiny")
    path = generate_skin_cohort(out, preset="tiny", seed=0, workers=2, progress=False)
    return out, json.loads(path.read_text())


def _load(out: Path, records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.asarray(Image.open(out / r["image"])) for r in records])
    masks = np.stack([np.asarray(Image.open(out / r["mask"])) for r in records])
    return images, masks


def _iou(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image IoU of (B, H, W) binary masks."""
    pred, truth = pred.bool(), truth.bool()
    return ((pred & truth).sum((1, 2)) / (pred | truth).sum((1, 2)).clamp(min=1)).double()


def _otsu_iou(images: np.ndarray, masks: np.ndarray, foreground: str) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    return _iou(OtsuPseudoMask(batched=True, foreground=foreground)(x)[:, 0], torch.from_numpy(masks))


# ---------------------------------------------------------------------------------------------- contract
def test_datalist_contract_and_split_sizes(tiny):
    out, dl = tiny
    spec = SKIN_PRESETS["tiny"]
    assert dl["classes"] == {str(k): v for k, v in SKIN_CLASSES.items()}
    sids = []
    for split in (*SPLITS, "unlabeled"):
        # the split is stratified by class: each size within one image per class of the request
        assert abs(len(dl[split]) - spec[split]) <= (len(SKIN_CLASSES) if split != "unlabeled" else 0), split
        for r in dl[split]:
            assert r["split"] == split and r["subject_id"] and r["mask"] and r["image"]
            assert (split == "unlabeled") != ("label" in r)
            if "label" in r:
                assert r["label"] in SKIN_CLASSES
            img, msk = np.asarray(Image.open(out / r["image"])), np.asarray(Image.open(out / r["mask"]))
            assert img.shape == (spec["size"], spec["size"], 3) and img.dtype == np.uint8
            assert msk.shape == img.shape[:2] and set(np.unique(msk)) <= {0, 1} and msk.any()
            sids.append(r["subject_id"])
    assert len(sids) == len(set(sids))  # one image per subject: subject-wise splits
    assert sum(len(dl[s]) for s in SPLITS) == sum(spec[s] for s in SPLITS)
    labels = [r["label"] for s in SPLITS for r in dl[s]]
    assert np.bincount(labels, minlength=3).tolist() == [44, 8, 12]  # 64 x (0.686, 0.127, 0.187), largest remainder
    attributes = json.loads((out / "attributes.json").read_text())
    assert set(attributes) == set(sids)


def test_same_seed_is_byte_identical_whatever_the_workers_and_another_seed_differs(tiny, tmp_path):
    out, _ = tiny
    generate_skin_cohort(tmp_path / "w1", preset="tiny", seed=0, workers=1, progress=False)
    first, again = _digest(out), _digest(tmp_path / "w1")
    assert len(first) == 2 * 72 + 3 and first == again
    generate_skin_cohort(tmp_path / "s1", preset="tiny", seed=1, workers=2, progress=False)
    other = _digest(tmp_path / "s1")
    assert other.keys() == first.keys()
    changed = [k for k in first if k.startswith("images/") and first[k] != other[k]]
    assert len(changed) == 72


def test_ensure_reuses_a_matching_cohort_and_regenerates_when_the_preset_changes(tmp_path, monkeypatch):
    monkeypatch.setitem(SKIN_PRESETS, "micro", {"training": 6, "validation": 3, "test": 3, "unlabeled": 2, "size": 64})
    monkeypatch.setitem(SKIN_PRESETS, "micro2", {"training": 6, "validation": 3, "test": 3, "unlabeled": 1, "size": 64})
    path = ensure_skin_cohort(tmp_path, preset="micro", seed=0, workers=1, progress=False)
    stamp = (tmp_path / "cohort.json").stat().st_mtime_ns, path.stat().st_mtime_ns
    assert ensure_skin_cohort(tmp_path, preset="micro", seed=0, workers=1, progress=False) == path
    assert ((tmp_path / "cohort.json").stat().st_mtime_ns, path.stat().st_mtime_ns) == stamp  # reused
    ensure_skin_cohort(tmp_path, preset="micro2", seed=0, workers=1, progress=False)
    meta = json.loads((tmp_path / "cohort.json").read_text())
    assert meta["preset"] == "micro2" and meta["unlabeled"] == 1
    assert len(json.loads(path.read_text())["unlabeled"]) == 1
    ensure_skin_cohort(tmp_path, preset="micro2", seed=0, size=48, workers=1, progress=False)  # an override
    assert json.loads((tmp_path / "cohort.json").read_text())["size"] == 48
    with pytest.raises(ValueError, match="preset"):
        ensure_skin_cohort(tmp_path, preset="huge")
    with pytest.raises(ValueError, match="unknown"):
        generate_skin_cohort(tmp_path, preset="micro", height=64)


def test_render_skin_is_deterministic_and_validates():
    a = render_skin(np.random.default_rng([1, 2, 3]), 64, label=2)
    b = render_skin(np.random.default_rng([1, 2, 3]), (64, 64), label=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] == 2 and a[3] == b[3]
    assert a[0].shape == (64, 64, 3) and a[1].shape == (64, 64) and a[1].dtype == np.uint8
    with pytest.raises(ValueError):
        render_skin(np.random.default_rng(0), 64, label=3)
    with pytest.raises(ValueError):
        render_skin(np.random.default_rng(0), (64, 80))


# ---------------------------------------------------------------------------------------------- honesty
def _global_features(rgb: np.ndarray) -> np.ndarray:
    x = rgb / 255.0
    gray = x @ GRAY
    return np.concatenate([x.mean((0, 1)), x.std((0, 1)), np.histogram(gray, 16, (0, 1))[0] / gray.size])


def _lesion_features(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Features a dermatologist's ABCD rule would use, computed with the lesion mask."""
    x = rgb / 255.0
    m = mask.astype(bool)
    ring = ndimage.binary_dilation(m, iterations=max(2, m.shape[0] // 16)) & ~m
    skin = x[ring].mean(0) if ring.any() else x[~m].mean(0)
    rel = x[m] / skin  # lesion colour relative to the surrounding skin
    gray = rel @ GRAY
    border = m & ~ndimage.binary_erosion(m)
    ys, xs = np.nonzero(border)
    cy, cx = np.argwhere(m).mean(0)
    radii = np.hypot(ys - cy, xs - cx)
    return np.array([
        m.mean(), border.sum() ** 2 / (4 * np.pi * m.sum()), radii.std() / radii.mean(),  # area, border
        *rel.std(0), *rel.mean(0),  # colour variety and contrast
        np.mean(gray < 0.55 * np.median(gray)), np.mean(gray > 0.97),  # black areas, bright areas
        np.mean(rel[:, 2] - rel[:, 0]), np.std(rel[:, 2] - rel[:, 0]),  # blue-gray
    ])


def _cv_balanced_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, class_weight="balanced"))
    pred = cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    return float(balanced_accuracy_score(y, pred))


def test_class_signal_lives_in_the_lesion_not_in_global_colour_statistics():
    # 150 small images per class (balanced, so chance is 1/3 whatever the metric)
    data = [render_skin(np.random.default_rng([7, 1, i]), 96, label=i % 3) for i in range(450)]
    y = np.array([d[2] for d in data])
    glob = np.array([_global_features(d[0]) for d in data])
    lesion = np.array([_lesion_features(d[0], d[1]) for d in data])
    acc_global = _cv_balanced_accuracy(glob, y)
    acc_area = _cv_balanced_accuracy(np.c_[glob, lesion[:, :1]], y)
    acc_lesion = _cv_balanced_accuracy(lesion, y)
    acc_shuffled = _cv_balanced_accuracy(lesion, np.random.default_rng(0).permutation(y))
    print(f"\nskin classes, balanced accuracy (chance 0.33): global colour {acc_global:.3f}, + lesion area "
          f"{acc_area:.3f}, lesion features {acc_lesion:.3f}, lesion features on shuffled labels {acc_shuffled:.3f}")
    assert acc_global <= 0.50
    assert acc_area <= 0.60
    assert acc_lesion >= acc_global + 0.2  # control: the same classifier does find the signal where it lives
    assert acc_shuffled <= 0.42  # control: no signal without the labels


def test_otsu_polarity_and_all_foreground_iou(tiny):
    out, dl = tiny
    images, masks = _load(out, [r for s in (*SPLITS, "unlabeled") for r in dl[s]])
    dark, bright = _otsu_iou(images, masks, "dark"), _otsu_iou(images, masks, "bright")
    area = masks.reshape(len(masks), -1).mean(1)
    allfg = _iou(torch.ones(masks.shape, dtype=torch.bool), torch.from_numpy(masks))
    print(f"\nskin tiny ({len(masks)} images): Otsu-dark IoU {dark.mean():.3f} (median {dark.median():.3f}), "
          f"Otsu-bright IoU {bright.mean():.3f}, all-foreground IoU {allfg.mean():.3f}, mean area {area.mean():.3f}")
    assert 0.35 <= float(dark.mean()) <= 0.75
    assert float(bright.mean()) < 0.2  # control: the polarity matters
    assert float(dark.min()) < 0.2 and float(dark.max()) > 0.7  # Otsu fails on some images and works on others
    assert np.allclose(allfg.numpy(), area)
    assert 0.15 <= area.mean() <= 0.35


def test_supervised_unet_learns_the_lesion_masks(tiny):
    from monai.losses import DiceLoss
    from monai.networks.nets import UNet

    out, dl = tiny
    size, side = SKIN_PRESETS["tiny"]["size"], 64

    def prepare(images, masks):
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        m = torch.from_numpy(masks)[:, None].float()
        return F.interpolate(x, side, mode="area"), (F.interpolate(m, side, mode="area") > 0.5).float()

    # 100% labels: the tiny training split plus 300 more phantoms of the same kind (tiny has only 40)
    extra = [render_skin(np.random.default_rng([0, 99, i]), size) for i in range(300)]
    tr_img, tr_msk = _load(out, dl["training"])
    x_tr, y_tr = prepare(np.concatenate([tr_img, [e[0] for e in extra]]),
                         np.concatenate([tr_msk, [e[1] for e in extra]]))
    te_img, te_msk = _load(out, dl["validation"] + dl["test"])
    x_te, y_te = prepare(te_img, te_msk)

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = UNet(2, 3, 1, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    dice = DiceLoss(sigmoid=True)
    for step in range(STEPS):
        idx = torch.randperm(len(x_tr), generator=g)[:16]
        xb, yb = x_tr[idx], y_tr[idx]
        if step % 2:
            xb, yb = xb.flip(-1), yb.flip(-1)
        logits = net(xb)
        loss = dice(logits, yb) + 0.5 * F.binary_cross_entropy_with_logits(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        unet = _iou(net(x_te)[:, 0] > 0, y_te[:, 0])
    otsu = _iou(OtsuPseudoMask(batched=True, foreground="dark")(x_te)[:, 0], y_te[:, 0])
    print(f"\nskin U-Net (64 px, {STEPS} steps, {len(x_tr)} training images): test IoU {unet.mean():.3f} vs "
          f"Otsu-dark {otsu.mean():.3f} on the same {len(x_te)} images")
    assert float(unet.mean()) >= float(otsu.mean()) + 0.2
    assert float(unet.mean()) >= 0.7


def test_module_exports():
    assert set(skin_module.__all__) >= {"SKIN_PRESETS", "generate_skin_cohort", "ensure_skin_cohort", "render_skin"}
    assert SKIN_PRESETS["paper"]["training"] == 2000 and SKIN_PRESETS["paper"]["size"] == 480
