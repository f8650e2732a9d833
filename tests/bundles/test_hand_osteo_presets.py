"""The hand_osteo bundle's presets and settings, checked on the parsed configs (no training): every train.json
setting reaches its stages, and what the paper and quick presets choose for SSL views, patches, monitor and probe."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.bundles.hand_osteo_tiny import BUNDLE, CONFIGS, workflow


def test_every_setting_of_train_json_reaches_its_stages():
    """A top-level setting of train.json is passed on to the stages (stage_settings or segmentation_overrides), so
    ``--<setting> value`` on the headline command changes what the stages run."""
    config = json.loads((CONFIGS / "train.json").read_text())
    structural = {"imports", "config_dir", "meta_file", "dataset_dir", "datalist_file", "phantom_preset",
                  "phantom_overrides", "phantom_dir", "stage_settings", "segmentation_overrides", "stage_overrides",
                  "segmentation_bundle", "stages", "initialize", "run", "finalize", "classifier_def",
                  "patches_configs", "ssl_configs", "probe_configs", "gates_configs", "evaluation_configs",
                  "gates_enabled"}
    passed = {v[1:] for v in [*config["stage_settings"].values(), *config["segmentation_overrides"].values()]}
    assert sorted(set(config) - structural - passed) == []


@pytest.mark.parametrize("preset, intensity, selection", [(None, (-0.5, 0.5), "val_subject_f1"),
                                                          ("quick.json", (0.0, 0.0), "val_subject_auc")])
def test_ssl_view_intensity_and_probe_selection_follow_the_preset(tmp_path, preset, intensity, selection):
    """The paper preset keeps the paper's 50-150 % brightness/contrast in every SSL view and selects the probe on
    subject macro-F1; the quick preset changes neither intensity (the phantom's signal is bone density) and selects
    on subject AUC. Checked on the parsed stage configs, as ``run_stages`` builds them."""
    files = ["train.json"] + ([preset] if preset else [])
    over = {"bundle_root": str(BUNDLE), "output_dir": str(tmp_path / "run"), "datalist": [], "device": "cpu"}
    parser = workflow([*files, "train_ssl.json"], None, **over).parser
    crop = next(t for t in parser.get_parsed_content("train#preprocessing").transforms
                if type(t).__name__ == "RandConstrainedMultiCropd")
    views = [crop.view_transform, crop.local_view_transform]
    for view in views:
        brightness, contrast = view.transforms[3].scaler, view.transforms[4].scaler
        assert tuple(brightness.factors) == intensity and tuple(contrast.factors) == intensity
    supervised = workflow([*files, "train_supervised.json"], None, **over).parser  # Table 6's variant: same range
    view = supervised.get_parsed_content("train_transform").transforms[1]  # after the patch preprocessing
    for scale in view.transforms[3:5]:
        assert tuple(scale.scaler.factors) == intensity
    probe = workflow([*files, "train_probe.json"], None, **over).parser
    assert list(probe.get_parsed_content("validate#key_metric")) == [selection]
    assert {*probe.get_parsed_content("validate#additional_metrics"), selection} == {"val_subject_f1",
                                                                                       "val_subject_auc"}


@pytest.mark.parametrize("preset, monitor_size", [(None, 224), ("quick.json", 64)])
@pytest.mark.parametrize("normalization", [None, "bone_zscore"])
def test_patch_normalization_and_monitor_size_reach_the_stages(tmp_path, preset, monitor_size, normalization):
    """``patch_normalization`` is applied by the SSL views' and the probe's preprocessing alike (paper preset: off;
    quick preset: bone z-score); the SSL monitor resizes patches to ``ssl_monitor_size`` (quick: the views' 64 px)."""
    files = ["train.json"] + ([preset] if preset else [])
    over = {"bundle_root": str(BUNDLE), "output_dir": str(tmp_path / "run"), "datalist": [], "device": "cpu",
            "patch_normalization": normalization}
    expected = "Identityd" if normalization is None else "NormalizeIntensityd"
    ssl = workflow([*files, "train_ssl.json"], None, **over).parser
    assert type(ssl.get_parsed_content("train#preprocessing").transforms[1]).__name__ == expected
    monitor = ssl.get_parsed_content("monitor#preprocessing").transforms
    assert [type(t).__name__ for t in monitor[:3]] == ["LoadBonePatchd", expected, "Resized"]
    assert tuple(monitor[2].resizer.spatial_size) == (monitor_size, monitor_size)
    probe = workflow([*files, "train_probe.json"], None, **over).parser
    assert type(probe.get_parsed_content("feature_preprocessing").transforms[1]).__name__ == expected
    for name, default in ((None, None), ("quick.json", "bone_zscore")):
        defaults = workflow(["train.json"] + ([name] if name else []), None, **{k: v for k, v in over.items()
                                                                               if k != "patch_normalization"})
        assert defaults.parser.get_parsed_content("patch_normalization") == default


@pytest.mark.parametrize("preset, pooling, width", [(None, "avg", 2048), ("quick.json", "stages", 960)])
def test_feature_pooling_reaches_the_probe_the_monitor_and_the_manifest(tmp_path, preset, pooling, width):
    """The paper preset reads the last stage's average (ResNet-50: 2048 features), the quick preset the averages of
    all four stages (ResNet-18: 960); the probe's classifier and the SSL monitor read the same features, the
    monitor from the very encoder SSL trains (shared weights), and ``run.json`` records the choice."""
    from monai_osteo.bundle.hand_osteo import write_run_manifest
    from monai_osteo.networks.nets import StagePooledResNet

    files = ["train.json"] + ([preset] if preset else [])
    over = {"bundle_root": str(BUNDLE), "output_dir": str(tmp_path / "run"), "datalist": [], "device": "cpu"}
    probe = workflow([*files, "train_probe.json"], None, **over).parser
    assert probe.get_parsed_content("feature_pooling") == pooling
    assert probe.get_parsed_content("classifier_def").fc.in_features == width
    ssl = workflow([*files, "train_ssl.json"], None, **over).parser
    index = next(i for i, h in enumerate(ssl["train"]["handlers"])
                 if h.get("_target_", "").endswith("EmbeddingProbeMonitor"))
    encoder = ssl.get_parsed_content(f"train#handlers#{index}#encoder")  # the monitor's features (no data needed)
    network = ssl.get_parsed_content("network")
    assert isinstance(encoder, StagePooledResNet) == (pooling == "stages")
    assert encoder.layer1[0].conv1.weight is network.backbone.layer1[0].conv1.weight  # SSL's steps move the monitor
    (tmp_path / "m.pt").write_bytes(b"x")
    manifest = write_run_manifest(tmp_path / "out", tmp_path / "m.pt", None, tmp_path, 64, "bones", None,
                                  feature_pooling=pooling)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["feature_pooling"] == manifest["feature_pooling"]
    assert manifest["feature_pooling"] == pooling


def test_the_quick_preset_tests_on_hundreds_of_subjects_and_trains_on_the_same_280():
    """The quick cohort's split, computed as the generator does (phenotypes and ``subject_split``, no images): 315
    test subjects (88 positive; 60 was too few to measure an AUC), and the training split keeps the 280 subjects the
    SSL and probe budgets were set for."""
    import inspect

    from monai.bundle import ConfigParser

    from monai_osteo.data.phantoms.cohort import PRESETS, generate_hand_cohort
    from monai_osteo.data.phantoms.subjects import sample_cohort_subjects
    from monai_osteo.data.splits import subject_split

    quick = ConfigParser.load_config_file(str(CONFIGS / "quick.json"))
    defaults = {k: v.default for k, v in inspect.signature(generate_hand_cohort).parameters.items()}
    kw = {**defaults, **PRESETS[quick["phantom_preset"]], **quick["phantom_overrides"]}
    for seed in (0, 2):
        subjects = sample_cohort_subjects(kw["subjects"], np.random.default_rng([seed, 0]), kw["prevalence"])
        subjects = [subjects[i] for i in np.random.default_rng([seed, 1]).permutation(len(subjects))]
        ids = [f"HX{i + 1:04d}" for i in range(len(subjects))]
        split = subject_split(ids, [s.label for s in subjects], kw["split_fractions"], seed=seed)
        test = [s for i, s in zip(ids, subjects) if split[i] == "test"]
        assert len(test) == 315 and sum(s.label for s in test) == 88
        assert sum(v == "training" for v in split.values()) == 280


@pytest.mark.parametrize("grouping", [None, "bone"])
def test_ssl_batch_grouping_builds_single_bone_batches(tmp_path, grouping):
    """``ssl_batch_grouping``: null (both presets) keeps the loader's shuffled mixed batches; "bone" gives the SSL
    loader a GroupedBatchSampler whose batches hold one bone each. Parsed from the stage config on a patch index."""
    from monai_osteo.data import GroupedBatchSampler

    patches = tmp_path / "patches"
    patches.mkdir()
    bones = ["ulna", "radius", "M1", "M2", "M3", "M4", "M5"]
    records = [{"patch": f"p{i}.npy", "role": ["ssl", "probe"], "split": "training", "label": i % 2,
                "subject_id": f"s{i // 7}", "bone": bones[i % 7], "image_id": f"s{i // 7}"} for i in range(7 * 20)]
    (patches / "index.json").write_text(json.dumps({"patches": records, "images": {}, "mode": "bones"}))
    for preset in ([], ["quick.json"]):
        default = workflow(["train.json", *preset], None, bundle_root=str(BUNDLE), datalist=[]).parser
        assert default.get_parsed_content("ssl_batch_grouping") is None
    over = {"bundle_root": str(BUNDLE), "output_dir": str(tmp_path / "run"), "datalist": [], "device": "cpu",
            "patches_dir": str(patches), "ssl_batch_size": 8, "ssl_batch_grouping": grouping}
    parser = workflow(["train.json", "quick.json", "train_ssl.json"], None, **over).parser
    loader = parser.get_parsed_content("train#dataloader")
    if grouping is None:
        assert not isinstance(loader.batch_sampler, GroupedBatchSampler) and loader.batch_size == 8
        return
    assert isinstance(loader.batch_sampler, GroupedBatchSampler) and len(loader.batch_sampler) == 7 * (20 // 8)
    data = loader.dataset.data
    for batch in loader.batch_sampler:
        assert len(batch) == 8 and len({data[i]["bone"] for i in batch}) == 1
