"""SubjectMacroF1 and SubjectAUC attached to an ignite engine equal the subject-level F1 and AUC computed by hand."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from monai_osteo.metrics.subject import aggregate_subjects, subject_macro_f1
from monai_osteo.metrics.subject_metric import SubjectAUC, SubjectMacroF1, subject_key_metric


def _batches(seed=0, n_batches=3, batch_size=5, n_subjects=6):
    g = torch.Generator().manual_seed(seed)
    subject_label = torch.randint(0, 2, (n_subjects,), generator=g)
    batches = []
    for _ in range(n_batches):
        subj = torch.randint(0, n_subjects, (batch_size,), generator=g)
        batches.append({"logits": torch.randn(batch_size, 2, generator=g) * 2, "label": subject_label[subj],
                        "subject_id": [f"s{int(s)}" for s in subj]})
    return batches


def _oracle(batches, key="subject_id"):
    records = []
    for b in batches:
        probs = torch.softmax(b["logits"], 1)
        for p, y, s in zip(probs, b["label"], b[key]):
            records.append({"subject_id": s, "bone": len(records), "probs": p.tolist(), "label": int(y)})
    return subject_macro_f1(aggregate_subjects(records))


def _evaluator(metric, name="subject_f1"):
    engine = Engine(lambda e, batch: {"pred": batch["logits"], "label": batch["label"]})
    metric.attach(engine, name)
    return engine


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_hand_computed_subject_f1_over_batches(seed):
    batches = _batches(seed)
    engine = _evaluator(SubjectMacroF1())
    state = engine.run(batches, max_epochs=1)
    expected = _oracle(batches)
    assert state.metrics["subject_f1"] == pytest.approx(expected, abs=1e-12)
    assert 0.0 <= expected <= 1.0


def test_accumulates_across_batches_not_last_batch_only():
    # s0 (label 1) has one confident wrong bone in batch 1 and two right bones in batch 2: the mean decides "1"
    b1 = {"logits": torch.tensor([[3.0, -3.0], [4.0, -4.0]]), "label": torch.tensor([1, 0]),
          "subject_id": ["s0", "s1"]}
    b2 = {"logits": torch.tensor([[-2.0, 2.0], [-2.5, 2.5], [3.0, -3.0]]), "label": torch.tensor([1, 1, 0]),
          "subject_id": ["s0", "s0", "s2"]}
    metric = SubjectMacroF1()
    state = _evaluator(metric).run([b1, b2], max_epochs=1)
    assert state.metrics["subject_f1"] == pytest.approx(1.0)  # s0 -> 1, s1 -> 0, s2 -> 0: all right
    assert state.metrics["subject_f1"] == pytest.approx(_oracle([b1, b2]))
    assert _oracle([b2]) == pytest.approx(1.0) and _oracle([b1]) == pytest.approx(1 / 3)  # b1 alone: s0 wrong


def test_reset_between_runs():
    first, second = _batches(0), _batches(2)
    assert _oracle(second) != pytest.approx(_oracle(first + second))  # without a reset the runs would mix
    metric = SubjectMacroF1()
    engine = _evaluator(metric)
    assert engine.run(first, max_epochs=1).metrics["subject_f1"] == pytest.approx(_oracle(first))
    assert engine.run(second, max_epochs=1).metrics["subject_f1"] == pytest.approx(_oracle(second))


def test_custom_subject_key_and_output_transform():
    batches = [{**b, "patient": b.pop("subject_id")} for b in _batches(3)]
    metric = SubjectMacroF1(subject_key="patient", output_transform=lambda o: (o[0], o[1]))
    engine = Engine(lambda e, batch: (batch["logits"], batch["label"]))
    metric.attach(engine, "f1")
    assert engine.run(batches, max_epochs=1).metrics["f1"] == pytest.approx(_oracle(batches, "patient"))


def test_direct_update_and_compute():
    batches = _batches(4)
    metric = SubjectMacroF1()
    for b in batches:
        metric.update((b["logits"], b["label"], b["subject_id"]))
    assert metric.compute() == pytest.approx(_oracle(batches))
    metric.reset()
    with pytest.raises(ValueError, match="at least one example"):
        metric.compute()


def test_missing_subject_key_raises():
    batches = _batches(0)
    for b in batches:
        del b["subject_id"]
    with pytest.raises(ValueError, match="subject ids in the batch under 'subject_id'"):
        _evaluator(SubjectMacroF1()).run(batches, max_epochs=1)
    engine = Engine(lambda e, batch: {"pred": batch[0], "label": batch[1]})  # a tuple batch has no subject ids
    SubjectMacroF1().attach(engine, "f1")
    with pytest.raises(ValueError, match="subject"):
        engine.run([(torch.randn(2, 2), torch.tensor([0, 1]))], max_epochs=1)


def _auc_oracle(batches):
    """roc_auc_score of each subject's mean bone probability of class 1, grouped by hand (no library grouping)."""
    from sklearn.metrics import roc_auc_score

    probs, labels = {}, {}
    for b in batches:
        for p, y, s in zip(torch.softmax(b["logits"], 1)[:, 1].tolist(), b["label"].tolist(), b["subject_id"]):
            probs.setdefault(s, []).append(p)
            labels[s] = y
    subjects = sorted(probs)
    return roc_auc_score([labels[s] for s in subjects], [sum(probs[s]) / len(probs[s]) for s in subjects])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subject_auc_matches_sklearn_on_subject_means(seed):
    batches = _batches(seed, n_subjects=12, n_batches=4)
    if len({int(y) for b in batches for y in b["label"]}) < 2:
        pytest.skip("one class drawn")
    state = _evaluator(SubjectAUC(), "auc").run(batches, max_epochs=1)
    assert state.metrics["auc"] == pytest.approx(_auc_oracle(batches), abs=1e-12)


def test_subject_auc_ranks_subject_means_not_bones():
    # the subjects' scores are the means of their bones' class-1 probabilities (Eq. 10), not single bones
    b = {"logits": torch.tensor([[-3.0, 3.0], [1.0, -1.0], [1.0, -1.0], [-0.5, 0.5], [1.0, -1.0], [1.0, -1.0]]),
         "label": torch.tensor([0, 0, 0, 1, 1, 1]), "subject_id": ["n", "n", "n", "p", "p", "p"]}
    # n: mean p1 = (0.9975 + 0.1192 * 2) / 3 = 0.4120; p: (0.7311 + 0.1192 * 2) / 3 = 0.3232 -> AUC 0
    assert _evaluator(SubjectAUC(), "auc").run([b], max_epochs=1).metrics["auc"] == pytest.approx(0.0)
    b["logits"][3] = torch.tensor([-4.0, 4.0])  # p: (0.99966 + 0.2384) / 3 = 0.4127 > n's 0.4120 -> AUC 1
    assert _evaluator(SubjectAUC(), "auc").run([b], max_epochs=1).metrics["auc"] == pytest.approx(1.0)


def test_subject_auc_needs_both_classes():
    b = {"logits": torch.randn(4, 2), "label": torch.tensor([1, 1, 1, 1]), "subject_id": ["a", "a", "b", "c"]}
    with pytest.raises(ValueError, match="both classes"):
        _evaluator(SubjectAUC(), "auc").run([b], max_epochs=1)


def test_subject_key_metric_names_and_rejects_unknown():
    assert list(subject_key_metric("f1")) == ["val_subject_f1"]
    assert isinstance(subject_key_metric("auc")["val_subject_auc"], SubjectAUC)
    with pytest.raises(ValueError, match="model selection must be one of"):
        subject_key_metric("accuracy")
