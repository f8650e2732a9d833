"""BonePatchWriter: the bones mode caches ExtractBonePatches' patches with their records; the random mode (no
segmentation ablation) is seeded; the index is written once, at the end, atomically."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine

from monai_osteo.data.phantoms import render_subject, sample_subject
from monai_osteo.handlers import BonePatchWriter
from monai_osteo.transforms import ExtractBonePatches
from tests.utils import assert_allclose

RECORDS = [
    {"image_id": "a", "subject_id": "s1", "label": 1, "split": "training", "set": "training",
     "roles": ["ssl", "probe"]},
    {"image_id": "b", "subject_id": "u1", "label": -1, "split": "training", "set": "unlabeled", "roles": ["ssl"]},
]


def _phantom():
    hand, _ = render_subject(sample_subject(np.random.default_rng(0)), seed=0, stream=9, index=0, height=128)
    img = torch.from_numpy(hand.image.astype(np.float32) / np.iinfo(hand.image.dtype).max)[None]
    prob = F.one_hot(torch.from_numpy(hand.truth.astype(np.int64)), 8).permute(2, 0, 1).float()
    return img, prob


def _run(writer, img, prob):
    engine = Engine(lambda e, batch: [{"pred": prob} for _ in batch])
    writer.attach(engine)
    engine.run([[{"radiograph": img, "record_index": torch.tensor(i)}] for i in range(len(RECORDS))], max_epochs=1)


def test_bones_mode_caches_the_extractor_patches(tmp_path):
    img, prob = _phantom()
    _run(BonePatchWriter(RECORDS, tmp_path), img, prob)
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["mode"] == "bones" and len(index["images"]) == 2
    extractor = ExtractBonePatches()
    bones, missing = extractor.find_bones(prob, tuple(img.shape[1:]))
    expected, _ = extractor.make_patches(img, bones, missing, masks=False)
    first = [r for r in index["patches"] if r["image_id"] == "a"]
    assert [r["bone"] for r in first] == [b.name for b in bones]
    for r, e in zip(first, expected):
        assert r["role"] == ["ssl", "probe"] and r["label"] == 1 and r["subject_id"] == "s1"
        assert_allclose(np.load(tmp_path / r["patch"]).astype(np.float32), e.numpy(), atol=1e-3, rtol=0)
    assert all(r["role"] == ["ssl"] and r["label"] == -1 for r in index["patches"] if r["image_id"] == "b")
    assert index["images"][0]["confidence"] == 1.0
    assert not [p for p in tmp_path.rglob(".*")]


def test_random_mode_is_seeded_and_gives_the_probe_the_whole_radiograph(tmp_path):
    img, prob = _phantom()
    for out in ("r1", "r2"):
        _run(BonePatchWriter(RECORDS, tmp_path / out, mode="random", seed=3), img, prob)
    a = json.loads((tmp_path / "r1/index.json").read_text())
    names = [r["bone"] for r in a["patches"] if r["image_id"] == "a"]
    assert names == [f"random{j}" for j in range(7)] + ["radiograph"]
    assert [r["bone"] for r in a["patches"] if r["image_id"] == "b"] == [f"random{j}" for j in range(7)]
    for r in a["patches"]:
        assert (np.load(tmp_path / "r1" / r["patch"]) == np.load(tmp_path / "r2" / r["patch"])).all()
    side = max(img.shape[1:])
    assert np.load(tmp_path / "r1/patches/a_radiograph.npy").shape == (1, side, side)
