"""S4MI classification metrics equal scikit-learn's micro F1/recall, macro F1 and balanced accuracy, also via ignite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import decollate_batch
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from monai_osteo.metrics.s4mi import (
    BalancedAccuracyMetric,
    MacroF1Metric,
    MicroF1Metric,
    MicroRecallMetric,
    balanced_accuracy,
    confusion_counts,
    macro_f1_argmax,
    micro_f1,
    micro_recall,
)


def _multi_label(seed, n=40, c=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, (torch.rand(n, c, generator=g) < 0.35).long()


def _multi_class(seed, n=40, c=4):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    return torch.randn(n, c, generator=g) + 1.5 * torch.nn.functional.one_hot(y, c), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_micro_f1_recall_match_sklearn_multi_label(seed):
    logits, y = _multi_label(seed)
    prob = torch.sigmoid(logits)
    pred = (prob > 0.5).long().numpy()
    assert micro_f1(prob, y) == pytest.approx(f1_score(y.numpy(), pred, average="micro"), abs=1e-12)
    assert micro_recall(prob, y) == pytest.approx(recall_score(y.numpy(), pred, average="micro"), abs=1e-12)
    pred3 = (prob > 0.3).long().numpy()
    assert micro_f1(prob.numpy(), y.numpy(), 0.3) == pytest.approx(f1_score(y.numpy(), pred3, average="micro"))


@pytest.mark.parametrize("seed", [0, 1])
def test_micro_metrics_on_multi_class_use_one_hot_and_sigmoid(seed):
    logits, y = _multi_class(seed)
    prob = torch.sigmoid(logits)  # CASS: sigmoid thresholding also on multi-class data
    one_hot = torch.nn.functional.one_hot(y, 4).numpy()
    pred = (prob > 0.5).long().numpy()
    assert micro_f1(prob, y) == pytest.approx(f1_score(one_hot, pred, average="micro"), abs=1e-12)
    assert micro_f1(prob, y) == micro_f1(prob, one_hot)
    assert micro_recall(prob, y.reshape(-1, 1)) == pytest.approx(recall_score(one_hot, pred, average="micro"))


def test_micro_f1_formula_and_zero_division():
    prob = torch.tensor([[0.9, 0.2, 0.6], [0.1, 0.7, 0.4]])
    y = torch.tensor([[1, 0, 0], [0, 0, 1]])  # TP 1, FP 2, FN 1
    assert micro_f1(prob, y) == pytest.approx(2 / (2 + 2 + 1)) and micro_recall(prob, y) == pytest.approx(0.5)
    assert micro_f1(torch.tensor([[0.5, 0.2]]), [[0, 0]]) == 0.0  # threshold is strict; 0/0 -> sklearn's 0.0
    assert micro_f1(torch.zeros(2, 2), torch.zeros(2, 2), zero_division=1.0) == 1.0
    assert micro_recall(torch.ones(2, 2), torch.zeros(2, 2)) == 0.0  # no positive target
    assert micro_f1(torch.ones(2, 2), torch.zeros(2, 2)) == 0.0  # FP only


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_and_balanced_accuracy_match_sklearn(seed):
    logits, y = _multi_class(seed, n=30, c=5)
    pred = logits.argmax(1).numpy()
    assert macro_f1_argmax(logits, y) == pytest.approx(f1_score(y.numpy(), pred, average="macro"), abs=1e-12)
    assert balanced_accuracy(logits, y) == pytest.approx(balanced_accuracy_score(y.numpy(), pred), abs=1e-12)
    one_hot = torch.nn.functional.one_hot(y, 5)
    assert macro_f1_argmax(torch.softmax(logits, 1), one_hot) == macro_f1_argmax(logits, y)


def test_absent_classes_follow_sklearn_label_set():
    # class 3 never occurs, class 2 only predicted: sklearn averages F1 over {0, 1, 2}, balanced accuracy over {0, 1}
    y = np.array([0, 0, 1, 1, 1])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 1, 0]), 4).float()
    with pytest.warns(UserWarning):
        expected_bacc = balanced_accuracy_score(y, [0, 2, 1, 1, 0])
    assert macro_f1_argmax(logits, y) == pytest.approx(f1_score(y, [0, 2, 1, 1, 0], average="macro"))
    assert balanced_accuracy(logits, y) == pytest.approx(expected_bacc)
    assert confusion_counts(logits, y).tolist() == [[1, 0, 1, 0], [1, 2, 0, 0], [0] * 4, [0] * 4]


def test_input_errors():
    with pytest.raises(ValueError, match="multi-label"):
        macro_f1_argmax(torch.randn(2, 3), torch.tensor([[1, 1, 0], [0, 1, 0]]))
    with pytest.raises(ValueError, match=r"class-index targets must be in \[0, 3\)"):
        micro_f1(torch.rand(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="one class per prediction"):
        balanced_accuracy(torch.randn(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(N, C\) scores"):
        micro_f1(torch.rand(4), torch.tensor([0, 1, 1, 0]))


def _run(metric, batches, decollate=False):
    def step(engine, batch):
        out = {"pred": batch[0], "label": batch[1]}
        return decollate_batch(out) if decollate else out

    engine = Engine(step)
    metric.attach(engine, "m")
    return engine.run(batches, max_epochs=1).metrics["m"]


def _split(x, y, size=7):
    return list(zip(x.split(size), y.split(size)))


@pytest.mark.parametrize("decollate", [False, True])
def test_ignite_micro_metrics_accumulate_over_batches(decollate):
    logits, y = _multi_label(3, n=33)
    pred = (torch.sigmoid(logits) > 0.5).long().numpy()
    batches = _split(logits, y)
    f1 = _run(MicroF1Metric(), batches, decollate)
    assert f1 == pytest.approx(f1_score(y.numpy(), pred, average="micro"), abs=1e-12)
    recall = recall_score(y.numpy(), pred, average="micro")
    assert _run(MicroRecallMetric(), batches, decollate) == pytest.approx(recall)
    assert f1 != pytest.approx(micro_f1(torch.sigmoid(batches[-1][0]), batches[-1][1]))  # not the last batch only


@pytest.mark.parametrize("decollate", [False, True])
def test_ignite_class_index_labels_and_activations(decollate):
    logits, y = _multi_class(4, n=30)
    one_hot = torch.nn.functional.one_hot(y, 4).numpy()
    batches = _split(logits, y)
    for activation, prob in (("sigmoid", torch.sigmoid(logits)), ("softmax", torch.softmax(logits, 1))):
        expected = f1_score(one_hot, (prob > 0.5).long().numpy(), average="micro")
        assert _run(MicroF1Metric(activation=activation), batches, decollate) == pytest.approx(expected)
    probs = _split(torch.sigmoid(logits), y)
    assert _run(MicroF1Metric(activation=None), probs) == pytest.approx(_run(MicroF1Metric(), batches))
    pred = logits.argmax(1).numpy()
    assert _run(MacroF1Metric(), batches, decollate) == pytest.approx(f1_score(y.numpy(), pred, average="macro"))
    assert _run(BalancedAccuracyMetric(), _split(logits, torch.nn.functional.one_hot(y, 4)), decollate) == \
        pytest.approx(balanced_accuracy_score(y.numpy(), pred))


def test_ignite_direct_update_reset_and_errors():
    logits, y = _multi_class(5, n=12)
    for metric, expected in ((MicroF1Metric(), micro_f1(torch.sigmoid(logits), y)),
                             (MacroF1Metric(num_classes=4), macro_f1_argmax(logits, y))):
        metric.update((logits[:5], y[:5]))
        metric.update((logits[5:], y[5:]))
        assert metric.compute() == pytest.approx(expected)
        metric.reset()
        with pytest.raises(ValueError, match="at least one example"):
            metric.compute()
    metric = MacroF1Metric()
    metric.update((logits, y))
    with pytest.raises(ValueError, match="set num_classes"):
        metric.update((torch.randn(2, 3), torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="activation must be one of"):
        MicroF1Metric(activation="relu")
