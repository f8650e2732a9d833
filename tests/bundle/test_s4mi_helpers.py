"""s4mi bundle helpers without training: rows, the stage list, the summary over seeds and the paper's claims."""

from __future__ import annotations

import pytest

from monai_osteo.bundle.s4mi import classification_rows, s4mi_stages, segmentation_rows
from monai_osteo.bundle.s4mi_report import s4mi_claims, summarise_s4mi_seeds
from monai_osteo.bundle.seed_runs import bundle_configs


def test_rows_and_stage_list(tmp_path):
    cls = classification_rows(["cass", "dino", "supervised"], ["cnn", "vit"], [0.1, 1.0])
    seg = segmentation_rows(["cross_teaching", "supervised_unet"], [0.1, 1.0])
    assert [r["row"] for r in cls[:2]] == ["cass_cnn@10", "cass_cnn@100"] and len(cls) == 12
    stages = s4mi_stages(tmp_path / "configs", tmp_path / "out", ["classification", "segmentation"], cls, seg,
                         training_configs=["multi_gpu_stage.json"])
    names = [s["name"] for s in stages]
    assert names[:3] == ["pretrain_cass", "pretrain_dino_cnn", "pretrain_dino_vit"] and names[-1] == "report"
    assert names.count("test_cross_teaching@10_unet") == names.count("test_cross_teaching@10_swin") == 1
    ct = stages[names.index("cross_teaching@10")]
    assert [p.split("/")[-1] for p in ct["config_file"]] == ["train.json", "segment.json", "cross_teaching.json",
                                                             "multi_gpu_stage.json"]
    dino = stages[names.index("dino_vit@100")]
    assert dino["overrides"]["init_checkpoint"].endswith("classification/pretrain_dino_vit/model.pt")
    only_seg = [s["name"] for s in s4mi_stages(tmp_path, tmp_path, ["segmentation"], cls, seg)]
    assert not any(n.startswith("pretrain") for n in only_seg)
    with pytest.raises(ValueError, match="workflows"):
        s4mi_stages(tmp_path, tmp_path, ["detection"], cls, seg)
    with pytest.raises(ValueError, match="cass/dino/supervised"):
        classification_rows(["byol"], ["cnn"], [1.0])
    for bad in ([10], [1.5], [0.0], []):
        with pytest.raises(ValueError, match=r"cls_fractions must be .* in \(0, 1\]"):
            classification_rows(["cass"], ["cnn"], bad)
    with pytest.raises(ValueError, match="seg_fractions"):
        segmentation_rows(["cross_teaching"], [0.1, 30])


def _report(seed_gain: float, ct_gain: float) -> dict:
    cls = [{"method": m, "backbone": "cnn", "fraction": f, "f1": 0.6, "recall": 0.6, "macro_f1": 0.3,
            "balanced_accuracy": 0.4 + f / 10 + (seed_gain * (1.5 - f) if m == "cass" else 0.0), "paper": None}
           for m in ("cass", "dino", "supervised") for f in (0.1, 1.0)]
    seg = [{"row": f"{m}@{int(100 * f)}", "method": m, "net": "unet", "fraction": f,
            "iou": 0.7 + (ct_gain * (1 - f) if m == "cross_teaching" else 0.0), "dice": 0.8}
           for m in ("cross_teaching", "supervised_unet") for f in (0.1, 0.3, 1.0)]
    return {"cohort": "skin", "paper_metric": "recall", "classification": cls, "segmentation": seg,
            "classification_floor": {"f1": 0.6, "recall": 0.6, "macro_f1": 0.27, "balanced_accuracy": 1 / 3}}


def test_claims_hold_fail_or_stay_unclear_from_paired_seeds():
    summary = summarise_s4mi_seeds([_report(0.05, 0.1), _report(0.02, 0.1), _report(0.04, 0.1)])
    verdicts = {c["claim"]: (c["verdict"], c["wins"]) for c in summary["claims"]}
    assert verdicts["C1: CASS > from scratch, CNN, 10% labels (balanced acc.)"] == ("holds", 3)
    assert verdicts["C1: CASS > from scratch, CNN, 10% labels (micro recall)"][0] == "tie"  # equal on every seed
    assert verdicts["C1: DINO > from scratch, CNN, 10% labels (balanced acc.)"][0] == "tie"
    assert verdicts["S1: cross-teaching unet > supervised_unet at 10% labels"] == ("holds", 3)
    assert verdicts["S1: cross-teaching unet > supervised_unet at 100% labels"][0] == "tie"
    assert verdicts["S3: cross-teaching unet gains more over supervised_unet at 10% than at 30%"][0] == "holds"
    c3 = "C3: {} gains more over from scratch at 10% than at 100% labels, CNN (balanced acc.)"
    assert verdicts[c3.format("CASS")] == ("holds", 3)  # gain 1.4 g at 10 % vs 0.5 g at 100 %
    assert verdicts[c3.format("DINO")][0] == "tie"
    assert verdicts["C1: CASS > from scratch, CNN, 100% labels (balanced acc.)"] == ("holds", 3)
    assert summary["classification_floor"]["f1"]["mean"] == pytest.approx(0.6)
    mixed = summarise_s4mi_seeds([_report(0.05, 0.1), _report(-0.01, 0.1)])
    c = {c["claim"]: c for c in mixed["claims"]}["C1: CASS > from scratch, CNN, 10% labels (balanced acc.)"]
    assert c["verdict"] == "unclear" and c["wins"] == 1 and c["seeds"] == 2
    worse = {c["claim"]: c["verdict"] for c in summarise_s4mi_seeds([_report(-0.05, -0.1), _report(-0.01, 0.1)])[
        "claims"]}
    assert worse["C1: CASS > from scratch, CNN, 10% labels (balanced acc.)"] == "fails"
    assert worse["S1: cross-teaching unet > supervised_unet at 10% labels"] == "fails"  # -0.09, +0.09: not a tie
    assert s4mi_claims({"classification": [], "segmentation": []}) == []


def test_bundle_configs(tmp_path):
    assert [p.split("/")[-1] for p in bundle_configs(tmp_path, "quick", ["a.json"])] == ["train.json", "quick.json",
                                                                                        "a.json"]
    assert len(bundle_configs(tmp_path, "paper")) == 1
    with pytest.raises(ValueError, match="preset"):
        bundle_configs(tmp_path, "fast")


def test_classification_class_weights_match_scikit_learn_and_reject_bad_input():
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    from monai_osteo.bundle.s4mi import classification_class_weights

    y = np.array([0] * 7 + [1] * 2 + [2] * 3)
    records = [{"label": np.eye(3)[c].tolist()} for c in y]
    w = classification_class_weights(records, "balanced", 3)
    np.testing.assert_allclose(w.numpy(), compute_class_weight("balanced", classes=np.arange(3), y=y), rtol=1e-6)
    assert classification_class_weights(records, None, 3) is None
    assert classification_class_weights(records, [1, 0.5, 2], 3).tolist() == [1.0, 0.5, 2.0]
    multi = [{"label": [1, 1, 0]}, {"label": [1, 0, 1]}, {"label": [1, 0, 0]}, {"label": [0, 1, 0]}]
    np.testing.assert_allclose(classification_class_weights(multi, "balanced").numpy(),
                               [4 / (3 * 3), 4 / (3 * 2), 4 / (3 * 1)], rtol=1e-6)
    with pytest.raises(ValueError, match=r"classes \[2\] have no positive"):
        classification_class_weights(records[:9], "balanced", 3)
    with pytest.raises(ValueError, match="'balanced'"):
        classification_class_weights(records, "inverse", 3)
    with pytest.raises(ValueError, match="3 non-negative"):
        classification_class_weights(records, [1, 2], 3)
