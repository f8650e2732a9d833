"""The probe's frozen features are computed once: its datasets are ``FrozenFeatureDataset`` over deterministic
preprocessing, and every CacheDataset of the stage configs caches its whole transform.

MONAI's ``CacheDataset`` caches up to the first transform that is randomizable or not a ``Transform``, and a nested
``Compose`` counts as randomizable: a preset returning a ``Compose`` inside another one silently turned the probe's
feature cache off (the encoder then ran on every patch in every epoch: 30 s per probe epoch instead of < 1 s).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigParser
from monai.transforms import Transform
from monai.transforms.traits import RandomizableTrait

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "hand_osteo" / "configs"


def _first_uncached(transform) -> int | None:
    return transform.get_index_of_first(lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform))


@pytest.mark.parametrize("stage, dataset_ids", [
    ("train_supervised.json", ["validate#dataset"]),
])
def test_cached_datasets_cache_their_whole_transform(stage, dataset_ids):
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "quick.json"), str(CONFIGS / stage)])
    parser.update({"ssl_enabled": False, "device": "$torch.device('cpu')"})  # random-init encoder: no checkpoint
    for ident in dataset_ids:
        assert parser[f"{ident}#_target_"] == "CacheDataset"
        transform = parser.get_parsed_content(f"{ident}#transform")
        assert _first_uncached(transform) is None, f"{stage} {ident}: {transform.transforms}"


def test_a_nested_compose_would_stop_the_cache():
    """The guard above can fail: an unflattened preset inside a Compose is seen as randomizable."""
    from monai.transforms import Compose

    from monai_osteo.transforms.presets import bone_patch_preprocessingd

    nested = Compose([bone_patch_preprocessingd("image", 32)])
    assert _first_uncached(nested) == 0
    assert _first_uncached(nested.flatten()) is None


def test_the_probe_encodes_each_patch_once_with_deterministic_preprocessing():
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "quick.json"), str(CONFIGS / "train_probe.json")])
    parser.update({"ssl_enabled": False, "device": "$torch.device('cpu')"})
    for ident in ("train#dataset", "validate#dataset"):
        assert parser[f"{ident}#_target_"] == "monai_osteo.data.FrozenFeatureDataset"
        transform = parser.get_parsed_content(f"{ident}#transform")
        assert _first_uncached(transform) is None, f"{ident}: {transform.transforms}"
