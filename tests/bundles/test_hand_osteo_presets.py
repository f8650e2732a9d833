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
    """``patch_normalization`` is applied by the SSL views' and the probe's preprocessing alike (off in both presets);
    the SSL monitor resizes patches to ``ssl_monitor_size`` (the quick preset: the views' 64 px)."""
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
    assert type(probe.get_parsed_content("feature_transform#transforms#0").transforms[1]).__name__ == expected
    for name in (None, "quick.json"):
        defaults = workflow(["train.json"] + ([name] if name else []), None, **{k: v for k, v in over.items()
                                                                               if k != "patch_normalization"})
        assert defaults.parser.get_parsed_content("patch_normalization") is None


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
