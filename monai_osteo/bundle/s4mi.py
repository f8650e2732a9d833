"""Helpers the s4mi bundle configs call: cohorts, records, label-fraction subsets, the stage list and networks.

The bundle has two workflows (specs/wave2.md §4): classification (CASS or DINO pre-training of a CNN and a ViT, then
fine-tuning at 10 % and 100 % labels beside supervised training from scratch) and segmentation (cross-teaching of a
U-Net and a Swin U-Net on labelled + unlabelled batches beside supervised-only networks at 10-100 % labels).

- [0] Singh et al., "Shifting to machine supervision: annotation-efficient semi and self-supervised learning for
  automatic medical image segmentation and classification", Sci. Rep. 2024 (S4MI).
- [1] specs/wave2.md §4.5 (decisions S-a ... S-r).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from monai_osteo.bundle.datalist import datalist_items
from monai_osteo.bundle.medsass import resolve_medsass_datalist
from monai_osteo.bundle.medsass_report import percent
from monai_osteo.data.fractions import stratified_label_fraction

__all__ = [
    "PlaceholderLabeld",
    "S4MI_COHORTS",
    "classification_class_weights",
    "classification_records",
    "classification_rows",
    "classification_test_metrics",
    "classification_val_metrics",
    "dino_local_size",
    "load_classifier",
    "load_segmentation_network",
    "load_state",
    "prepare_classifier",
    "resolve_s4mi_datalist",
    "s4mi_stages",
    "segmentation_class_weights",
    "segmentation_data",
    "segmentation_network",
    "segmentation_records",
    "segmentation_rows",
    "ssl_records",
]

DOCS = "bundles/s4mi/docs/README.md"
#: embedded cohorts: classification label layout and the mask segmented
S4MI_COHORTS = {
    "skin": {"num_classes": 3, "multilabel": False, "mask_key": "mask",
             "class_names": ["nevus", "seborrheic_keratosis", "melanoma"]},
    "fluorescence": {"num_classes": 5, "multilabel": True, "mask_key": "mask_cells",
                     "class_names": ["TFH-1", "TFH-217", "TFH-like", "B cells", "others"]},
}


def resolve_s4mi_datalist(cohort: str, dataset_dir=None, datalist_file=None, phantom_dir=None,
                          phantom_preset: str = "quick", seed: int = 0,
                          phantom_overrides: Mapping | None = None) -> str:
    """The user's datalist (``dataset_dir``/``datalist_file``) or the embedded ``skin``/``fluorescence`` phantom
    cohort generated into ``phantom_dir`` (as the medsass bundle)."""
    if dataset_dir is None and datalist_file is None and cohort not in S4MI_COHORTS:
        raise ValueError(f"cohort must be one of {sorted(S4MI_COHORTS)} (the embedded phantoms), got {cohort!r}; for "
                         "your own images set dataset_dir (with datalist.json) or datalist_file.")
    return resolve_medsass_datalist(cohort, dataset_dir, datalist_file, phantom_dir, phantom_preset, seed,
                                    phantom_overrides)


def _multi_hot(label, num_classes: int, multilabel: bool, where: str) -> list[float]:
    if multilabel:
        values = [float(v) for v in label] if isinstance(label, (list, tuple)) else None
        if values is None or len(values) != num_classes or any(v not in (0.0, 1.0) for v in values):
            raise ValueError(f"{where}: a multi-label item needs 'label' = a list of {num_classes} 0/1 values, got "
                             f"{label!r} (format: {DOCS}).")
        return values
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
        raise ValueError(f"{where}: a multi-class item needs 'label' = a class index in [0, {num_classes}), got "
                         f"{label!r} (format: {DOCS}).")
    return [1.0 if c == label else 0.0 for c in range(num_classes)]


def _items(datalist, splits: Sequence[str]) -> list[dict]:
    return datalist_items(datalist, ("training", "validation", "test", "unlabeled"), list(splits))


def classification_records(datalist: str | os.PathLike, splits: Sequence[str], num_classes: int, multilabel: bool,
                           fraction: float = 1.0, seed: int = 0, limit: int | None = None) -> list[dict]:
    """``[{"image", "label"}]``: ``label`` a float multi-hot vector of ``num_classes`` (one-hot for multi-class data:
    the CASS code's sigmoid focal loss and micro F1 treat both alike), for the items of ``splits``.

    ``fraction < 1`` keeps a seeded, class-stratified, nested subset (10 % inside 100 % for one seed; the stratum
    of a multi-label item is its label combination), all labels of each kept image (S4MI: "x % of the images").
    """
    items = _items(datalist, splits)
    out = []
    for d in items:
        if "label" not in d:
            raise ValueError(f"{datalist}: item {os.path.basename(str(d['image']))!r} (split {d.get('split')!r}) has "
                             f"no 'label'; classification needs one per image (format: {DOCS}).")
        out.append({"image": d["image"],
                    "label": _multi_hot(d["label"], num_classes, multilabel,
                                        f"{datalist}: item {os.path.basename(str(d['image']))!r}")})
    if fraction < 1.0:
        strata = [tuple(int(v) for v in r["label"]) for r in out]
        out = [out[i] for i in stratified_label_fraction(strata, fraction, seed)]
    if limit is not None:
        out = out[:limit]
    if not out:
        raise ValueError(f"{datalist}: no labelled items with split in {list(splits)} (format: {DOCS}).")
    return out


def classification_class_weights(records: Sequence[Mapping], method=None, num_classes: int | None = None
                                 ) -> torch.Tensor | None:
    """Per-class weights of the fine-tuning focal loss (``FocalLoss(weight=...)`` multiplies each class's term, as
    the CASS code's ``focal_loss * cls_weights``), from the labelled training ``records`` actually used.

    Args:
        records: ``[{"label": multi-hot vector}]`` from :func:`classification_records` (the kept label fraction).
        method: ``None`` (unweighted: the default), ``"balanced"`` (``n_images / (n_classes * n_c)`` with ``n_c``
            the images positive for class c: scikit-learn's ``compute_class_weight("balanced")`` for one-hot
            labels, the same count of positives for multi-label data), or an explicit list of ``num_classes``
            weights. The CASS code's own weights are ISIC-2019 constants that *rise* with class frequency (1.0 for
            the most frequent class down to 0.2 for the rarest): they do not transfer to another label set.
        num_classes: checked against the labels (and an explicit list) when given.
    """
    if method is None:
        return None
    labels = torch.as_tensor([list(r["label"]) for r in records], dtype=torch.float64)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError("cls_class_weights needs at least one labelled record with a multi-hot 'label'.")
    k = labels.shape[1] if num_classes is None else int(num_classes)
    if labels.shape[1] != k:
        raise ValueError(f"labels have {labels.shape[1]} classes, num_classes is {k}.")
    if isinstance(method, str):
        if method != "balanced":
            raise ValueError(f"cls_class_weights must be null, 'balanced' or a list of {k} weights, got {method!r}.")
        positives = labels.sum(0)
        missing = torch.nonzero(positives == 0).flatten().tolist()
        if missing:
            raise ValueError(f"classes {missing} have no positive image among the {labels.shape[0]} labelled training "
                             "images, so 'balanced' weights are undefined: use a larger label fraction or give "
                             "cls_class_weights as a list.")
        return (labels.shape[0] / (k * positives)).float()
    weights = torch.as_tensor(method, dtype=torch.float32).flatten()
    if weights.numel() != k or bool((weights < 0).any()):
        raise ValueError(f"cls_class_weights must have {k} non-negative values, got {list(method)!r}.")
    return weights


def dino_local_size(local_size, image_size: Sequence[int], backbone: str) -> tuple[int, ...]:
    """Size of the DINO local crops: ``local_size`` (canonical DINO: 96 px at 224, i.e. 3/7 of the image) for the
    CNN; for the ViT the image size, because MONAI's ViT has a learnable position embedding fixed to ``img_size``
    (DINO interpolates it for 96-px crops; lucidrains' ``Dino``, which S4MI used, resizes every crop to the image
    size instead, as done here). ``None`` means the image size."""
    if local_size is None or backbone == "vit":
        return tuple(int(s) for s in image_size)
    size = tuple(int(s) for s in local_size)
    if len(size) != len(image_size) or min(size) < 1:
        raise ValueError(f"dino local_size must have {len(image_size)} positive sizes, got {local_size!r}.")
    return size


def ssl_records(datalist: str | os.PathLike, splits: Sequence[str] = ("training", "unlabeled"),
                limit: int | None = None) -> list[dict]:
    """``[{"image"}]`` for label-free pre-training (never reads a label)."""
    out = [{"image": d["image"]} for d in _items(datalist, splits)]
    out = out[:limit] if limit is not None else out
    if not out:
        raise ValueError(f"{datalist}: no items with split in {list(splits)} (format: {DOCS}).")
    return out


def segmentation_data(datalist: str | os.PathLike, mask_key: str, fraction: float = 1.0, seed: int = 0,
                      limit: int | None = None, unlabeled_splits: Sequence[str] = ("unlabeled",)) -> dict:
    """Records and the two index streams of semi-supervised segmentation.

    The labelled images are a seeded, nested subset (stratified by the image's class label when it has one) of the
    ``training`` items; the unlabelled stream holds the other training images and those of ``unlabeled_splits``
    (their masks are never read). At ``fraction == 1`` there is no unused training image: the unlabelled stream then
    draws from all training images with their masks ignored (S4MI's 15 labelled + 1 unlabelled batches keep the
    cross-teaching term; SSL4MIS' empty stream would hang, decision in specs/wave2.md §4.3).

    Returns:
        ``{"records": [{"image", "label"?}], "primary": [indices of labelled records], "secondary": [indices of
        unlabelled records (no "label")], "labelled": [records with labels]}``.
    """
    train = _items(datalist, ["training"])
    if limit is not None:
        train = train[:limit]
    missing = [os.path.basename(str(d["image"])) for d in train if mask_key not in d]
    if missing:
        raise ValueError(f"{datalist}: training items {missing[:3]} have no {mask_key!r} mask; segmentation needs one "
                         f"per training image (format: {DOCS}).")
    strata = [tuple(d["label"]) if isinstance(d.get("label"), list) else d.get("label") for d in train]
    keep = stratified_label_fraction(None if all(s is None for s in strata) else strata, fraction, seed, n=len(train))
    kept = set(keep)
    labelled = [{"image": train[i]["image"], "label": train[i][mask_key]} for i in keep]
    rest = [{"image": d["image"]} for i, d in enumerate(train) if i not in kept]
    extra = [{"image": d["image"]} for d in _items(datalist, unlabeled_splits)] if unlabeled_splits else []
    unlabelled = rest + extra
    if limit is not None:
        unlabelled = unlabelled[:limit]
    if not rest:
        unlabelled = [{"image": d["image"]} for d in train] + unlabelled
    records = labelled + unlabelled
    return {"records": records, "primary": list(range(len(labelled))),
            "secondary": list(range(len(labelled), len(records))), "labelled": labelled}


def classification_rows(methods: Sequence[str], backbones: Sequence[str], fractions: Sequence[float]) -> list[dict]:
    """One row per (method, backbone, label fraction): ``{"row": "cass_cnn@10", "method", "backbone", "fraction"}``;
    methods among ``cass``, ``dino``, ``supervised`` (from scratch), backbones ``cnn``/``vit``."""
    bad = set(methods) - {"cass", "dino", "supervised"} or set(backbones) - {"cnn", "vit"}
    if bad:
        raise ValueError(f"classification methods must be among cass/dino/supervised and backbones cnn/vit, got "
                         f"{list(methods)}, {list(backbones)}.")
    _check_fractions(fractions, "cls_fractions")
    return [{"row": f"{m}_{b}@{percent(f)}", "method": m, "backbone": b, "fraction": float(f)}
            for m in methods for b in backbones for f in fractions]


def segmentation_rows(methods: Sequence[str], fractions: Sequence[float]) -> list[dict]:
    """One row per (method, fraction): methods ``cross_teaching`` (U-Net <-> Swin U-Net) or ``supervised_<arch>``
    with arch ``unet``, ``swin``, ``resnet34`` (the DEDL analogue)."""
    ok = {"cross_teaching", "supervised_unet", "supervised_swin", "supervised_resnet34"}
    if set(methods) - ok:
        raise ValueError(f"segmentation methods must be among {sorted(ok)}, got {list(methods)}.")
    _check_fractions(fractions, "seg_fractions")
    return [{"row": f"{m}@{percent(f)}", "method": m, "fraction": float(f)} for m in methods for f in fractions]


def _check_fractions(fractions: Sequence[float], name: str) -> None:
    """Label fractions are shares of the labelled training images: 0 < f <= 1 (10 % is 0.1, not 10); checked before
    any stage runs, so a typo does not surface after pre-training or train on every image under another name."""
    bad = [f for f in fractions if not isinstance(f, (int, float)) or isinstance(f, bool) or not 0 < f <= 1]
    if bad or not list(fractions):
        raise ValueError(f"{name} must be a non-empty list of label fractions in (0, 1] (e.g. [0.1, 1.0] for 10 % "
                         f"and 100 %), got {list(fractions)!r}.")


def s4mi_stages(config_dir: str | os.PathLike, output_dir: str | os.PathLike, workflows: Sequence[str],
                cls_rows: Sequence[Mapping], seg_rows: Sequence[Mapping], stage_overrides: Mapping | None = None,
                training_configs: Sequence[str] = ()) -> list[dict]:
    """The stage list of ``train.json`` for :func:`~monai_osteo.bundle.run_stages`.

    Classification (``"classification" in workflows``): ``classification/pretrain_cass`` (``pretrain_cass.json``,
    both networks) when a row uses CASS; ``classification/pretrain_dino_<backbone>`` (``pretrain_dino.json``) per
    backbone a DINO row uses; per
    row its fine-tuning (``classify.json``) and test (``test_classification.json``). Segmentation: per row its
    training (``segment.json``, with ``cross_teaching.json`` layered on it for cross-teaching rows) and one test
    per network (``test_segmentation.json``; cross-teaching rows test ``unet`` and ``swin``). Last, ``report.json``.
    Every stage config is layered on ``train.json``; ``stage_overrides`` maps a stage name to extra ids;
    ``training_configs`` are layered last on training stages.
    """
    cfg, out = Path(config_dir), Path(output_dir)
    extra = dict(stage_overrides or {})
    unknown = set(workflows) - {"classification", "segmentation"}
    if unknown or not workflows:
        raise ValueError(f"workflows must be a non-empty subset of ['classification', 'segmentation'], got "
                         f"{list(workflows)}.")

    def stage(name: str, config: str | list[str], folder: Path, overrides: dict, train: bool = False) -> dict:
        names = [config] if isinstance(config, str) else list(config)
        names = [*names, *training_configs] if train else names
        s = {"name": name, "config_file": [str(cfg / "train.json"), *(str(cfg / n) for n in names)],
             "output_dir": str(folder), "overrides": {**overrides, **dict(extra.get(name, {}))}}
        if train:
            s["workflow_type"] = "train"
        return s

    stages: list[dict] = []
    if "classification" in workflows:
        cls = out / "classification"
        if any(r["method"] == "cass" for r in cls_rows):
            stages.append(stage("pretrain_cass", "pretrain_cass.json", cls / "pretrain_cass", {}, True))
        for b in ("cnn", "vit"):
            if any(r["method"] == "dino" and r["backbone"] == b for r in cls_rows):
                stages.append(stage(f"pretrain_dino_{b}", "pretrain_dino.json", cls / f"pretrain_dino_{b}",
                                    {"backbone": b}, True))
        for r in cls_rows:
            init = {"cass": str(cls / "pretrain_cass" / "model.pt"),
                    "dino": str(cls / f"pretrain_dino_{r['backbone']}" / "model.pt")}.get(r["method"])
            over = {"row": r["row"], "method": r["method"], "backbone": r["backbone"], "init_checkpoint": init,
                    "label_fraction": r["fraction"]}
            stages.append(stage(r["row"], "classify.json", cls / r["row"], over, True))
            stages.append(stage(f"test_{r['row']}", "test_classification.json", cls / r["row"] / "test",
                                {"row": r["row"], "backbone": r["backbone"]}))
    if "segmentation" in workflows:
        seg = out / "segmentation"
        for r in seg_rows:
            over = {"row": r["row"], "seg_method": r["method"], "label_fraction": r["fraction"]}
            configs = ["segment.json", "cross_teaching.json"] if r["method"] == "cross_teaching" else "segment.json"
            stages.append(stage(r["row"], configs, seg / r["row"], over, True))
            nets = ["unet", "swin"] if r["method"] == "cross_teaching" else [r["method"].split("_", 1)[1]]
            for n in nets:
                stages.append(stage(f"test_{r['row']}_{n}", "test_segmentation.json", seg / r["row"] / f"test_{n}",
                                    {"row": r["row"], "seg_method": r["method"], "eval_net": n}))
    stages.append(stage("report", "report.json", out / "report", {}))
    return stages


def load_state(path: str | os.PathLike, key: str = "model") -> dict[str, torch.Tensor]:
    """The state dict stored under ``key`` in a checkpoint written by the bundle's savers (MedSASS's
    ``load_checkpoint_state``, with this bundle's advice when the file is missing)."""
    from monai_osteo.engines.medsass.transfer import load_checkpoint_state

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is missing: run the stage that writes it first (python -m monai.bundle run "
                                f"--config_file bundles/s4mi/configs/train.json runs them in order).")
    return load_checkpoint_state(path, key)


def segmentation_records(datalist: str | os.PathLike, splits: Sequence[str], mask_key: str,
                         limit: int | None = None) -> list[dict]:
    """``[{"image", "label"}]`` (label = the mask under ``mask_key``) for evaluation splits; every item needs it."""
    out = []
    for d in _items(datalist, splits):
        if mask_key not in d:
            raise ValueError(f"{datalist}: item {os.path.basename(str(d['image']))!r} (split {d.get('split')!r}) has "
                             f"no {mask_key!r} mask; evaluation needs one per image (format: {DOCS}).")
        out.append({"image": d["image"], "label": d[mask_key]})
    out = out[:limit] if limit is not None else out
    if not out:
        raise ValueError(f"{datalist}: no items with split in {list(splits)} (format: {DOCS}).")
    return out


def segmentation_class_weights(labelled: Sequence[Mapping], method: str | None = "median_frequency",
                               num_classes: int = 2) -> torch.Tensor | None:
    """Cross-entropy class weights from the labelled training masks only (the S4MI code also counted the validation
    and test masks: decision in specs/wave2.md §4.3); ``None`` for unweighted CE."""
    if method is None:
        return None
    if method != "median_frequency":
        raise ValueError(f"seg_class_weights must be 'median_frequency' or null, got {method!r}.")
    from monai_osteo.losses.class_weights import median_frequency_weights

    return median_frequency_weights([r["label"] for r in labelled], num_classes)


class PlaceholderLabeld:
    """Give an unlabelled record (no ``label``) an all-zero label of the image's spatial shape, so that labelled and
    unlabelled records collate into one batch; the cross-teaching trainer never reads the labels of the unlabelled
    part of a batch (it slices ``[:labeled_batch_size]``)."""

    def __init__(self, image_key: str = "image", label_key: str = "label") -> None:
        self.image_key, self.label_key = image_key, label_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if self.label_key not in d:
            image = d[self.image_key]
            d[self.label_key] = torch.zeros((1, *image.shape[1:]), dtype=torch.float32)
        return d


def _classifier_state(path, method: str, backbone: str) -> dict[str, torch.Tensor]:
    state = load_state(path)
    if method == "cass":  # CASSNetwork: cnn.* / vit.*
        prefix = "cnn." if backbone == "cnn" else "vit."
    elif method == "dino":  # DINONetwork: the student backbone
        prefix = "backbone."
    else:
        prefix = ""
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} if prefix else state
    if not sub:
        raise ValueError(f"{path}: no weights under {prefix!r} (keys start {sorted(state)[:3]}); is it the "
                         f"checkpoint of the {method} pre-training stage?")
    return sub


def prepare_classifier(net: torch.nn.Module, method: str, backbone: str, init_checkpoint=None,
                       pretrained_weights=None) -> torch.nn.Module:
    """The classifier of a fine-tuning row: CASS or DINO pre-trained backbone (head re-initialised for the classes:
    the CASS code swaps ``fc``/``head``), or from scratch (``supervised``; ``pretrained_weights``, a user's
    checkpoint of the same architecture, is loaded the same way when given: no ImageNet download offline)."""
    if method in ("cass", "dino"):
        if init_checkpoint is None:
            raise ValueError(f"method {method!r} needs init_checkpoint (the pre-training stage's model.pt).")
        net.load_backbone(_classifier_state(init_checkpoint, method, backbone))
    elif method == "supervised":
        if pretrained_weights:
            net.load_backbone(load_state(pretrained_weights))
    else:
        raise ValueError(f"method must be cass, dino or supervised, got {method!r}.")
    return net


def load_classifier(net: torch.nn.Module, model_file) -> torch.nn.Module:
    """``net`` with the fine-tuned weights of ``model_file`` (strict)."""
    net.load_state_dict(load_state(model_file))
    return net.eval()


def classification_test_metrics(multilabel: bool, threshold: float = 0.5) -> dict:
    """Additional test metrics beside the CASS-literal micro F1: micro recall (ISIC's metric) and, for multi-class
    data, argmax macro F1 and balanced accuracy."""
    from monai.handlers import from_engine

    from monai_osteo.metrics.s4mi import BalancedAccuracyMetric, MacroF1Metric, MicroRecallMetric

    ot = from_engine(["pred", "label"])
    out = {"test_recall": MicroRecallMetric(threshold=threshold, output_transform=ot)}
    if not multilabel:
        out["test_macro_f1"] = MacroF1Metric(output_transform=ot)
        out["test_balanced_accuracy"] = BalancedAccuracyMetric(output_transform=ot)
    return out


def segmentation_network(arch: str, in_channels: int = 3, out_channels: int = 2, img_size=(224, 224),
                         unet_features=(16, 32, 64, 128, 256, 16), unet_dropout: float = 0.1,
                         swin_feature_size: int = 48) -> torch.nn.Module:
    """``unet`` (BasicUNet), ``swin`` (2-D SwinUNETR), ``resnet34`` (FlexibleUNet, the DEDL analogue without ImageNet
    weights) or ``pair`` (:class:`CrossTeachingPair` of the U-Net and the Swin U-Net)."""
    from monai_osteo.networks.nets.cross_teaching import CrossTeachingPair, s4mi_swin_unet, s4mi_unet

    if arch == "unet":
        return s4mi_unet(in_channels, out_channels, features=tuple(unet_features), dropout=unet_dropout)
    if arch == "swin":
        return s4mi_swin_unet(in_channels, out_channels, img_size=tuple(img_size), feature_size=swin_feature_size)
    if arch == "resnet34":
        from monai.networks.nets import FlexibleUNet

        return FlexibleUNet(in_channels, out_channels, backbone="resnet34", pretrained=False, spatial_dims=2)
    if arch == "pair":
        return CrossTeachingPair(segmentation_network("unet", in_channels, out_channels, img_size, unet_features,
                                                      unet_dropout, swin_feature_size),
                                 segmentation_network("swin", in_channels, out_channels, img_size, unet_features,
                                                      unet_dropout, swin_feature_size))
    raise ValueError(f"segmentation arch must be unet, swin, resnet34 or pair, got {arch!r}.")


def load_segmentation_network(model_file, seg_method: str, eval_net: str, in_channels: int = 3, img_size=(224, 224),
                              unet_features=(16, 32, 64, 128, 256, 16), unet_dropout: float = 0.1,
                              swin_feature_size: int = 48) -> torch.nn.Module:
    """The network ``eval_net`` (``unet``/``swin``/``resnet34``) of a trained segmentation row, in eval mode: for a
    cross-teaching row, ``net1`` (U-Net) or ``net2`` (Swin U-Net) of the saved pair."""
    net = segmentation_network(eval_net, in_channels, 2, img_size, unet_features, unet_dropout, swin_feature_size)
    state = load_state(model_file)
    if seg_method == "cross_teaching":
        prefix = {"unet": "net1.", "swin": "net2."}.get(eval_net)
        if prefix is None:
            raise ValueError(f"a cross-teaching row holds a unet and a swin network, got eval_net {eval_net!r}.")
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    net.load_state_dict(state)
    return net.eval()


def classification_val_metrics(selection: str, threshold: float, loss: torch.nn.Module) -> tuple[dict, dict]:
    """``(key metric, additional metrics)`` of the fine-tuning evaluator: both hold ``val_f1`` (CASS-literal micro
    F1) and ``val_loss`` (the training loss on the validation split); ``selection`` names the key one (the best
    model): ``"f1"`` (the CASS code keeps the best validation metric) or ``"loss"`` (lowest; micro F1 is flat at the
    majority-class value while an imbalanced multi-class model is still learning, so it keeps the first epoch)."""
    from ignite.metrics import Loss
    from monai.handlers import from_engine

    from monai_osteo.metrics.s4mi import MicroF1Metric

    if selection not in ("f1", "loss"):
        raise ValueError(f"cls_selection must be 'f1' or 'loss', got {selection!r}.")
    ot = from_engine(["pred", "label"])
    metrics = {"val_f1": MicroF1Metric(threshold=threshold, output_transform=ot),
               "val_loss": Loss(loss, output_transform=from_engine(["pred", "label"], first=False))}
    key = "val_f1" if selection == "f1" else "val_loss"
    return {key: metrics[key]}, {k: v for k, v in metrics.items() if k != key}
