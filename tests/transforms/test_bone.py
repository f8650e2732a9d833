"""Bone patches against an independent NumPy/SciPy oracle on phantom radiographs."""

from __future__ import annotations

import logging
from functools import cache

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor, list_data_collate, set_track_meta
from monai.transforms import Compose, LoadImaged, Resize, ScaleIntensityd
from PIL import Image
from scipy import ndimage

from monai_osteo.data.phantoms import BONE_LABELS, FIELD_MM, place_hand, render_hand, render_subject, sample_subject
from monai_osteo.transforms.bone import ExtractBonePatches, ExtractBonePatchesd, collate_bone_patches
from tests.utils import assert_allclose

H = 384
NAMES = list(BONE_LABELS)


@cache
def phantom(i: int):
    r, _ = render_subject(sample_subject(np.random.default_rng(i)), seed=0, stream=5, index=i, height=H)
    return r.image, r.truth


@cache
def phantom_missing(i: int):
    rng = np.random.default_rng([7, i])
    sp = FIELD_MM[0] / H
    width = int(round(FIELD_MM[1] / sp))
    hand = place_hand(sample_subject(np.random.default_rng(i)), rng, (H * sp, width * sp), missing_p=1.0)
    r = render_hand(hand, (H, width), sp, rng, annotators=1)
    return r.image, r.truth, hand.missing


def oracle(image: np.ndarray, truth: np.ndarray, value: int, margin: float = 0.05):
    """Largest 8-connected component, tight bbox, masked crop and square window, written independently."""
    lab, n = ndimage.label(truth == value, structure=np.ones((3, 3)))
    if n == 0:
        return None
    comp = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    rows, cols = np.nonzero(comp)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    crop = (image * comp)[r0:r1, c0:c1]
    h, w = crop.shape
    m = int(round(margin * max(h, w))) if margin < 1 else int(margin)
    return dict(comp=comp, bbox=(r0, c0, r1, c1), crop=crop, side=max(h, w) + 2 * m, area=int(comp.sum()))


def check_patch(patch: np.ndarray, ref: dict) -> None:
    """Square, bone crop at the centre, zeros everywhere else."""
    assert patch.ndim == 3 and patch.shape[1] == patch.shape[2] == ref["side"]
    h, w = ref["crop"].shape
    top, left = (ref["side"] - h) // 2, (ref["side"] - w) // 2
    assert abs((ref["side"] - h - top) - top) <= 1 and abs((ref["side"] - w - left) - left) <= 1
    assert_allclose(patch[0, top:top + h, left:left + w], ref["crop"])
    rest = patch[0].copy()
    rest[top:top + h, left:left + w] = 0
    assert not rest.any(), "padding must be zeros"


@pytest.mark.parametrize("i", [0, 1, 2])
def test_patches_match_oracle(i):
    image, truth = phantom(i)
    img = MetaTensor(torch.from_numpy(image.astype(np.int32)).to(torch.uint16)[None], meta={"filename_or_obj": "a.png"})
    patches = ExtractBonePatches()(img, truth[None])
    assert [p.meta["bone"] for p in patches] == NAMES
    for p in patches:
        ref = oracle(image, truth, p.meta["bone_label"])
        assert p.dtype == torch.uint16 and isinstance(p, MetaTensor)
        check_patch(p.numpy(), ref)
        assert p.meta["bbox"] == ref["bbox"] and p.meta["area"] == ref["area"]
        assert p.meta["bones_not_found"] == "" and p.meta["source"] == "a.png" and p.meta["filename_or_obj"] == "a.png"
        r0, c0, r1, c1 = p.meta["bbox"]  # bbox covers the component and is tight
        assert ref["comp"][r0:r1, c0:c1].sum() == ref["area"]
        inner = ref["comp"][r0:r1, c0:c1]
        assert inner[0].any() and inner[-1].any() and inner[:, 0].any() and inner[:, -1].any()
        # the affine maps patch pixel (i, j) to original pixel crop_box[:2] + (i, j)
        R0, C0 = p.meta["crop_box"][:2]
        assert_allclose(p.affine @ torch.tensor([5.0, 7.0, 0.0, 1.0], dtype=torch.float64), [R0 + 5, C0 + 7, 0, 1])


def test_split_bone_keeps_larger_component():
    image, truth = phantom(0)
    truth = truth.copy()
    rows = np.nonzero((truth == 4).any(1))[0]
    cut = rows[0] + (rows[-1] - rows[0]) // 3
    band = truth[cut:cut + 3] == 4
    truth[cut:cut + 3][band] = 0
    assert ndimage.label(truth == 4, structure=np.ones((3, 3)))[1] == 2
    (patch,) = [p for p in ExtractBonePatches()(MetaTensor(image[None].astype(np.float32)), truth[None])
                if p.meta["bone"] == "M2"]
    ref = oracle(image.astype(np.float32), truth, 4)
    assert ref["area"] < (truth == 4).sum()
    assert patch.meta["bbox"][0] > cut  # the larger piece is the distal two thirds
    check_patch(patch.numpy(), ref)


@pytest.mark.parametrize("i", [0, 1])
def test_missing_bone_is_reported(i):
    image, truth, missing = phantom_missing(i)
    assert len(missing) == 1
    patches = ExtractBonePatches()(MetaTensor(image[None]), truth[None])
    assert len(patches) == 6 and missing[0] not in [p.meta["bone"] for p in patches]
    assert all(p.meta["bones_not_found"] == missing[0] for p in patches)


def test_min_area_drops_small_bones():
    image, truth = phantom(1)
    truth = truth.copy()
    rr, cc = np.nonzero(truth == 5)
    truth[truth == 5] = 0
    truth[rr[:20], cc[:20]] = 5  # 20 px of M3 left, below 0.05% of the image (~52 px)
    truth[truth == 6] = 0  # M4 gone
    patches = ExtractBonePatches()(MetaTensor(image[None]), truth[None])
    assert [p.meta["bone"] for p in patches] == ["ulna", "radius", "M1", "M2", "M5"]
    assert patches[0].meta["bones_not_found"] == "M3,M4"
    assert len(ExtractBonePatches(min_area=10)(image[None], truth[None])) == 6  # pixels when >= 1


def soft_probs(truth: np.ndarray, p_true: float = 0.7) -> np.ndarray:
    prob = np.full((8, *truth.shape), (1 - p_true) / 7, dtype=np.float32)
    np.put_along_axis(prob, truth[None].astype(np.int64), p_true, axis=0)
    return prob


@pytest.mark.parametrize("threshold", [None, 0.5])
def test_probabilities_equal_label_map(threshold):
    image, truth = phantom(2)
    t = ExtractBonePatches(threshold=threshold)
    a = t(image[None], truth[None])
    b = t(image[None], soft_probs(truth))
    assert len(a) == len(b) == 7
    for x, y in zip(a, b):
        assert x.dtype == np.uint16
        assert_allclose(x, y)


def test_reduced_resolution_masks():
    image, truth = phantom(0)
    low = truth[2::4, 2::4]  # 1/4 resolution, centred samples
    full = ExtractBonePatches()(MetaTensor(image[None]), truth[None])
    for label in (low[None], soft_probs(low, 1.0)):
        up = ExtractBonePatches()(MetaTensor(image[None]), label)
        assert len(up) == 7
        for a, b in zip(full, up):
            assert a.meta["bone"] == b.meta["bone"]
            assert np.abs(np.subtract(a.meta["bbox"], b.meta["bbox"])).max() <= 4
            assert abs(a.meta["area"] - b.meta["area"]) < 0.2 * a.meta["area"]


def test_dict_matches_array_and_carries_keys():
    image, truth = phantom(1)
    img = MetaTensor(image[None].astype(np.float32), meta={"filename_or_obj": "b.png"})
    arr = ExtractBonePatches(return_mask=True)(img, truth[None])
    data = {"image": img, "image2": img * 2, "label": truth[None], "subject_id": "S1", "extra": [1, 2]}
    out = ExtractBonePatchesd(["image", "image2"], "label", mask_key="mask")(data)
    assert len(out) == len(arr) == 7
    for d, (p, m) in zip(out, arr):
        assert_allclose(d["image"], p)
        assert_allclose(d["image2"], 2 * p)
        assert_allclose(d["mask"], m)
        assert "label" not in d and d["subject_id"] == "S1" and d["extra"] == [1, 2]
        assert d["bone"] == p.meta["bone"] and d["bone_label"] == BONE_LABELS[d["bone"]]
        assert tuple(d["bbox"]) == p.meta["bbox"] and d["area"] == p.meta["area"] and d["source"] == "b.png"
        assert d["mask"].dtype == torch.bool and m.sum() == d["area"]
    out[0]["extra"].append(3)
    assert out[1]["extra"] == [1, 2]  # other keys deep-copied
    for p, m in arr:  # the mask is the oracle's component, placed like the patch
        ref = oracle(image, truth, p.meta["bone_label"])
        r0, c0, r1, c1 = ref["bbox"]
        check_patch(m.numpy().astype(np.uint8), {**ref, "crop": ref["comp"][r0:r1, c0:c1].astype(np.uint8)})


def test_dataset_and_dataloader(tmp_path):
    items = []
    for i in range(2):
        image, truth = phantom(i)
        Image.fromarray(image).save(tmp_path / f"img{i}.png")
        Image.fromarray(truth).save(tmp_path / f"lab{i}.png")
        items.append({"image": str(tmp_path / f"img{i}.png"), "label": str(tmp_path / f"lab{i}.png"), "y": i})
    load = LoadImaged(["image", "label"], ensure_channel_first=True)
    # native-scale patches: a flat list of 14 dicts, per-patch transforms applied to each
    ds = Dataset(items, Compose([load, ExtractBonePatchesd("image", "label"), ScaleIntensityd("image")]))
    batch = next(iter(DataLoader(ds, batch_size=2, num_workers=0, collate_fn=collate_bone_patches)))
    assert len(batch) == 14 and [d["y"] for d in batch] == [0] * 7 + [1] * 7
    assert batch[0]["source"] == str(tmp_path / "img0.png") and batch[0]["image"].max() == 1
    # fixed size: MONAI's default list_data_collate stacks them
    ds = Dataset(items, Compose([load, ExtractBonePatchesd("image", "label", spatial_size=32)]))
    batch = next(iter(DataLoader(ds, batch_size=2, num_workers=0, collate_fn=list_data_collate)))
    assert batch["image"].shape == (14, 1, 32, 32) and batch["bbox"].shape == (14, 4)
    assert batch["bone"] == NAMES * 2
    padded = collate_bone_patches([ds[0], ExtractBonePatchesd("image", "label")(load(items[1]))], pad=True)
    assert padded["image"].shape[0] == 14


def test_no_bone(caplog):
    image, _ = phantom(0)
    img = MetaTensor(image[None], meta={"filename_or_obj": "empty.png"})
    with caplog.at_level(logging.WARNING):
        assert ExtractBonePatches()(img, np.zeros((1, H, image.shape[1]), np.uint8)) == []
    assert "empty.png" in caplog.text
    with pytest.raises(ValueError, match="empty.png"):
        ExtractBonePatches(allow_empty=False)(img, np.zeros((1, H, image.shape[1]), np.uint8))
    d = ExtractBonePatchesd("image", "label")({"image": img, "label": np.zeros((1, H // 4, image.shape[1] // 4))})
    assert d == [] and collate_bone_patches([d, d]) == []


def test_types_and_track_meta():
    image, truth = phantom(2)
    lab = torch.from_numpy(truth[None])
    x = torch.from_numpy(image[None].astype(np.float64))
    out = ExtractBonePatches()(x, lab)
    assert type(out[0]) is torch.Tensor and out[0].dtype == torch.float64
    set_track_meta(False)
    try:
        out = ExtractBonePatches(return_mask=True)(MetaTensor(x), lab)
    finally:
        set_track_meta(True)
    assert type(out[0][0]) is torch.Tensor and type(out[0][1]) is torch.Tensor
    p, m = ExtractBonePatches(return_mask=True)(image[None], truth[None])[0]
    assert isinstance(p, np.ndarray) and p.dtype == np.uint16 and m.dtype == bool


def test_resize_option():
    image, truth = phantom(0)
    x = MetaTensor(image[None].astype(np.float32))
    native = ExtractBonePatches(return_mask=True)(x, truth[None])
    resized = ExtractBonePatches(spatial_size=48, return_mask=True)(x, truth[None])
    for (p, m), (q, k) in zip(native, resized):
        assert q.shape == k.shape == (1, 48, 48) and q.dtype == torch.float32 and k.dtype == torch.bool
        assert_allclose(q, Resize((48, 48), mode="area")(p.as_tensor()), rtol=1e-5, atol=1e-3)
        assert_allclose(k, Resize((48, 48), mode="nearest")(m.as_tensor().float()) > 0.5)
        assert q.meta["bbox"] == p.meta["bbox"]
    q = ExtractBonePatches(spatial_size=40)(image[None], truth[None])[0]
    assert q.dtype == np.uint16 and q.shape == (1, 40, 40)


def test_margin_in_pixels():
    image, truth = phantom(1)
    for p in ExtractBonePatches(margin=3)(MetaTensor(image[None]), truth[None]):
        r0, c0, r1, c1 = p.meta["bbox"]
        assert p.shape[1] == max(r1 - r0, c1 - c0) + 6
        check_patch(p.numpy(), oracle(image, truth, p.meta["bone_label"], margin=3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    image, truth = phantom(0)
    x = torch.from_numpy(image[None].astype(np.float32))
    cpu = ExtractBonePatches()(x, torch.from_numpy(soft_probs(truth[2::4, 2::4])))
    gpu = ExtractBonePatches()(x.cuda(), torch.from_numpy(soft_probs(truth[2::4, 2::4])).cuda())
    assert len(gpu) == 7 and gpu[0].device.type == "cuda"
    for a, b in zip(cpu, gpu):
        assert_allclose(a, b)


def test_errors():
    image, truth = phantom(0)
    t = ExtractBonePatches()
    with pytest.raises(ValueError, match="img must be channel-first"):
        t(image, truth[None])
    with pytest.raises(ValueError, match="label must be channel-first"):
        t(image[None], truth)
    with pytest.raises(ValueError, match="more than 7"):
        t(image[None], np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="aspect ratio"):
        t(image[None], np.zeros((1, 100, 100), np.uint8))
    for kwargs, match in [({"margin": -1}, "margin must"), ({"min_area": -0.1}, "min_area must"),
                          ({"spatial_size": 0}, "spatial_size must"), ({"bone_labels": {"a": 0}}, "bone_labels")]:
        with pytest.raises(ValueError, match=match):
            ExtractBonePatches(**kwargs)
    with pytest.raises(ValueError, match="label_key must not"):
        ExtractBonePatchesd(["image", "label"], "label")
    with pytest.raises(ValueError, match="label_key must name"):
        ExtractBonePatchesd("image", "label")({"image": image[None]})
    with pytest.raises(ValueError, match="one spatial size"):
        ExtractBonePatchesd(["a", "b"], "label")({"a": image[None], "b": image[None, :10], "label": truth[None]})


@pytest.mark.parametrize("low,full", [((64, 44), (717, 503)), ((30, 20), (97, 61)), ((16, 16), (16 * 7, 16 * 7))])
def test_upsampled_argmax_equals_full_bilinear_upsampling(low, full):
    """The windowed argmax equals argmax(interpolate(prob, bilinear)) everywhere (oracle: the plain upsampling)."""
    from monai_osteo.transforms.bone.functional import mask_to_labels

    g = torch.Generator().manual_seed(sum(low))
    h, w = low
    lab = torch.zeros(h, w, dtype=torch.long)
    for k in range(1, 8):
        r = int(torch.randint(0, h - h // 4, (1,), generator=g))
        c = int(torch.randint(0, w - w // 4, (1,), generator=g))
        lab[r:r + h // 5 + 1, c:c + w // 6 + 1] = k
    logits = torch.randn(8, h, w, generator=g) + 3 * torch.nn.functional.one_hot(lab, 8).permute(2, 0, 1)
    prob = torch.softmax(torch.nn.functional.avg_pool2d(logits[None], 3, 1, 1)[0], 0)
    ref = torch.nn.functional.interpolate(prob[None], size=full, mode="bilinear", align_corners=False)[0].argmax(0)
    out = mask_to_labels(prob, full)
    assert out.dtype == torch.uint8
    assert torch.equal(out.long(), ref)
