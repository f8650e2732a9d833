"""Bundle helpers of medsass: nested label fractions, records, protocol rows and stages, seed summaries."""

from __future__ import annotations

import json

import pytest

from monai_osteo.bundle.medsass import (
    label_fraction,
    medsass_records,
    protocol_rows,
    protocol_stages,
    read_metric_csv,
    summarise_seeds,
    write_report,
)


def test_label_fractions_are_seeded_nested_and_at_least_one():
    a, b, c = (label_fraction(200, f, seed=3) for f in (0.01, 0.1, 1.0))
    assert len(a) == 2 and len(b) == 20 and c == list(range(200))
    assert set(a) <= set(b) <= set(c)
    assert label_fraction(200, 0.1, seed=3) == b and label_fraction(200, 0.1, seed=4) != b
    assert len(label_fraction(7, 0.01)) == 1 and label_fraction(0, 0.5) == []
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        label_fraction(10, 0.0)


def _datalist(tmp_path, with_masks=True):
    items = {s: [{"image": f"{s}{i}.png", "split": s, **({"mask": f"{s}{i}_m.png"} if with_masks else {})}
                 for i in range(n)] for s, n in (("training", 20), ("validation", 3), ("test", 4), ("unlabeled", 5))}
    items["unlabeled"] = [{k: v for k, v in d.items() if k != "mask"} for d in items["unlabeled"]]
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(items))
    return path


def test_records_images_only_for_pretraining_and_masks_for_supervision(tmp_path):
    path = _datalist(tmp_path)
    pre = medsass_records(path, ["training", "unlabeled"], None)
    assert len(pre) == 25 and all(set(r) == {"image"} for r in pre)
    sup = medsass_records(path, ["training"], "mask", fraction=0.1, seed=0)
    assert len(sup) == 2 and all(r["label"].endswith("_m.png") for r in sup)
    with pytest.raises(ValueError, match="has no 'mask'"):
        medsass_records(path, ["unlabeled"], "mask")
    with pytest.raises(ValueError, match="no items with split"):
        medsass_records(path, ["nowhere"], None)


PROTOCOLS = [{"name": "zero_shot_ed", "init": "medsass", "transfer": "full", "train": False},
             {"name": "finetune_e", "init": "medsass", "transfer": "encoder"},
             {"name": "finetune_byol", "init": "byol", "transfer": "encoder", "fractions": [0.1]},
             {"name": "finetune_scratch", "init": None, "transfer": "scratch"}]


def test_protocol_rows_and_stages(tmp_path):
    rows = protocol_rows(PROTOCOLS, [0.01, 1.0])
    assert [r["row"] for r in rows] == ["zero_shot_ed", "finetune_e@1", "finetune_e@100", "finetune_byol@10",
                                        "finetune_scratch@1", "finetune_scratch@100"]
    stages = protocol_stages(tmp_path / "configs", tmp_path / "out", rows, ["byol", "dino"], ["otsu"],
                             {"pretrain": {"x": 1}}, ["multi.json"])
    names = [s["name"] for s in stages]
    assert names[:2] == ["pretrain", "pretrain_byol"] and "pretrain_dino" not in names  # unused baseline skipped
    assert names[-2:] == ["test_reference_otsu", "report"]
    by = {s["name"]: s for s in stages}
    assert by["pretrain"]["overrides"] == {"x": 1} and by["pretrain"]["config_file"][-1].endswith("multi.json")
    assert not by["test_zero_shot_ed"]["config_file"][-1].endswith("multi.json")  # evaluation: one process
    ft = by["finetune_byol@10"]["overrides"]
    assert ft["init_checkpoint"].endswith("pretrain_byol/model.pt") and ft["label_fraction"] == 0.1
    assert by["test_finetune_byol@10"]["overrides"]["init_checkpoint"].endswith("finetune_byol@10/model.pt")
    assert by["test_zero_shot_ed"]["overrides"]["transfer"] == "full"
    assert by["finetune_scratch@1"]["overrides"]["init_checkpoint"] is None
    with pytest.raises(ValueError, match="neither 'medsass' nor in ssl_baselines"):
        protocol_stages(tmp_path, tmp_path, rows, [], ["otsu"])
    with pytest.raises(ValueError, match="unique"):
        protocol_rows(PROTOCOLS + PROTOCOLS[:1], [1.0])


def test_report_and_seed_summary(tmp_path):
    rows = protocol_rows(PROTOCOLS[:2], [0.1])
    reports = []
    for seed, (ed, otsu, e) in enumerate(((0.5, 0.4, 0.6), (0.45, 0.42, 0.62), (0.41, 0.43, 0.58))):
        out = tmp_path / f"s{seed}"
        for row, v in (("zero_shot_ed", ed), ("reference_otsu", otsu), ("finetune_e@10", e)):
            (out / row / "test").mkdir(parents=True)
            (out / row / "test" / "metrics.csv").write_text(f"test_iou,{v}\ntest_dice,{2 * v / (1 + v)}\n")
        reports.append(write_report(out, rows, ["otsu"], out / "report", "skin"))
    assert read_metric_csv(tmp_path / "s0/zero_shot_ed/test/metrics.csv")["test_iou"] == 0.5
    md = (tmp_path / "s0/report/metrics.md").read_text()
    assert "| zero_shot_ed | 0% | 0.5000 |" in md and "0.4847" in md  # the paper's ISIC E+D beside ours
    summary = summarise_seeds(reports)
    ed = next(r for r in summary["rows"] if r["row"] == "zero_shot_ed")["iou"]
    assert ed["n"] == 3 and ed["mean"] == pytest.approx(0.4533333) and ed["ci95"][0] < ed["mean"] < ed["ci95"][1]
    q = next(c for c in summary["comparisons"] if c["b"] == "reference_otsu")
    assert q["wins"] == 2 and q["iou_difference"]["mean"] == pytest.approx((0.1 + 0.03 - 0.02) / 3)
