"""EmbeddingProbeMonitor and subject_auc against oracles: sklearn's ROC AUC on per-subject means, a direct numpy
weighted kNN, a direct scikit-learn probe; when it runs on an ignite engine, the encoder's mode, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from monai_osteo.handlers import EmbeddingProbeMonitor, subject_auc
from tests.utils import assert_allclose

KEYS = ("val_knn_auc", "val_probe_auc", "val_knn_accuracy")


def _cohort(n_subjects: int, patches: int = 3, dim: int = 8, signal: float = 1.0, seed: int = 0):
    """(N, 1, dim) float32 features, (N,) labels, (N,) subject ids: ``signal`` is added to feature 0 of positives."""
    rng = np.random.default_rng(seed)
    y_subject = np.arange(n_subjects) % 2
    rng.shuffle(y_subject)
    y = np.repeat(y_subject, patches)
    sids = np.repeat([f"s{seed}_{k:03d}" for k in range(n_subjects)], patches)
    x = rng.normal(size=(len(y), 1, dim)).astype(np.float32)
    x[:, 0, 0] += signal * y
    return x, y, sids


def _batches(x, y, sids, batch_size: int = 5) -> list[dict]:
    """A list-of-dict "loader": collated batches of ``image``, ``label`` and ``subject_id``."""
    return [{"image": torch.from_numpy(x[i:i + batch_size]), "label": torch.from_numpy(y[i:i + batch_size]),
             "subject_id": list(sids[i:i + batch_size])} for i in range(0, len(y), batch_size)]


def _subject_auc_oracle(scores, labels, sids) -> float:
    subjects = sorted(set(sids.tolist()))
    s = [float(np.mean([v for v, k in zip(scores, sids) if k == subj])) for subj in subjects]
    t = [int(labels[list(sids).index(subj)]) for subj in subjects]
    return float(roc_auc_score(t, s))


def _knn_oracle(xb, yb, xv, k: int, t: float) -> np.ndarray:
    """Positive-class share of exp(cos / t)-weighted votes of the k most cosine-similar bank features."""
    b = xb / np.linalg.norm(xb, axis=1, keepdims=True)
    q = xv / np.linalg.norm(xv, axis=1, keepdims=True)
    sim = q.astype(np.float64) @ b.T.astype(np.float64)
    idx = np.argsort(-sim, axis=1)[:, :k]
    w = np.exp(np.take_along_axis(sim, idx, axis=1) / t)
    return (w * (yb[idx] == 1)).sum(1) / w.sum(1)


def _probe_oracle(xb, yb, xv, c: float) -> np.ndarray:
    scaler = StandardScaler().fit(xb)
    probe = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(scaler.transform(xb), yb)
    return probe.predict_proba(scaler.transform(xv))[:, 1]


class _Exploding:
    """A loader that must never be read."""

    def __iter__(self):
        raise AssertionError("the loader was read")


def test_subject_auc_is_the_auc_of_per_subject_means():
    scores = np.array([0.1, 0.3, 0.8, 0.2, 0.6, 0.6])
    labels = np.array([0, 0, 1, 1, 0, 0])
    sids = np.array(["a", "a", "b", "b", "c", "c"])
    # means a 0.2 (neg), b 0.5 (pos), c 0.6 (neg): the positive beats one of two negatives
    assert subject_auc(scores, labels, sids) == pytest.approx(0.5)
    assert roc_auc_score(labels, scores) != pytest.approx(0.5)  # the patch-level AUC differs
    rng = np.random.default_rng(1)
    sids = rng.permutation(np.repeat(np.arange(25), 3))  # interleaved subjects, unequal ordering
    labels = (sids % 3 == 0).astype(int)
    scores = rng.random(len(sids)) + 0.3 * labels
    assert subject_auc(scores, labels, sids) == pytest.approx(_subject_auc_oracle(scores, labels, sids), abs=1e-12)


def test_subject_auc_is_nan_with_one_class():
    assert np.isnan(subject_auc(np.array([0.2, 0.9, 0.4]), np.array([1, 1, 1]), np.array(["a", "b", "b"])))
    assert np.isnan(subject_auc(np.array([0.2, 0.9]), np.array([0, 0]), np.array(["a", "b"])))


@pytest.mark.parametrize("knn_k, knn_t", [(5, 0.5), (1, 0.1), (1000, 0.2)])
def test_knn_auc_matches_numpy_oracle(knn_k, knn_t):
    xb, yb, _ = _cohort(30, signal=0.8, seed=0)
    xv, yv, sv = _cohort(24, signal=0.8, seed=1)
    monitor = EmbeddingProbeMonitor(torch.nn.Flatten(), _batches(xb, yb, _), _batches(xv, yv, sv), knn_k=knn_k,
                                    knn_t=knn_t)
    scores = monitor.compute("cpu")
    fb, fv = xb.reshape(len(xb), -1), xv.reshape(len(xv), -1)
    knn = _knn_oracle(fb, yb, fv, min(knn_k, len(fb)), knn_t)  # k is clipped to the bank size
    expected = _subject_auc_oracle(knn, yv, sv)
    assert 0.5 < expected < 1.0  # an informative case: neither chance nor perfect
    assert scores["val_knn_auc"] == pytest.approx(expected, abs=1e-12)
    assert scores["val_knn_accuracy"] == pytest.approx(float(((knn > 0.5) == yv).mean()), abs=1e-12)


@pytest.mark.parametrize("probe_c", [0.1, 0.003])
def test_probe_auc_matches_sklearn_oracle(probe_c):
    xb, yb, sb = _cohort(30, signal=0.6, seed=2)
    yb[:9] = 1  # unbalanced bank: the class weights matter
    xv, yv, sv = _cohort(24, signal=0.6, seed=3)
    scores = EmbeddingProbeMonitor(torch.nn.Flatten(), _batches(xb, yb, sb), _batches(xv, yv, sv),
                                   probe_c=probe_c).compute()
    expected = _subject_auc_oracle(_probe_oracle(xb.reshape(len(xb), -1), yb, xv.reshape(len(xv), -1), probe_c),
                                   yv, sv)
    assert 0.55 < expected < 0.99
    assert scores["val_probe_auc"] == pytest.approx(expected, abs=1e-12)


def test_monai_dataloader_and_list_of_batches_agree():
    xb, yb, sb = _cohort(20, seed=4)
    xv, yv, sv = _cohort(12, seed=5)
    as_list = EmbeddingProbeMonitor(torch.nn.Flatten(), _batches(xb, yb, sb), _batches(xv, yv, sv)).compute()

    def loader(x, y, s):
        data = [{"image": torch.from_numpy(a), "label": int(b), "subject_id": str(c)} for a, b, c in zip(x, y, s)]
        return DataLoader(data, batch_size=7, shuffle=False, num_workers=0)

    as_loader = EmbeddingProbeMonitor(torch.nn.Flatten(), loader(xb, yb, sb), loader(xv, yv, sv)).compute()
    assert set(as_list) == set(KEYS) and as_list == pytest.approx(as_loader, abs=1e-12)


def test_planted_feature_separates_and_shuffled_labels_do_not():
    xb, yb, sb = _cohort(40, signal=20.0, seed=6)
    xv, yv, sv = _cohort(30, signal=20.0, seed=7)
    planted = EmbeddingProbeMonitor(torch.nn.Flatten(), _batches(xb, yb, sb), _batches(xv, yv, sv)).compute()
    assert planted["val_knn_auc"] == 1.0 and planted["val_probe_auc"] == 1.0 and planted["val_knn_accuracy"] > 0.9
    rng = np.random.default_rng(8)
    # the same features with subject labels permuted: no label information left
    perm_b = dict(zip(np.unique(sb), rng.permutation(yb[::3])))
    perm_v = dict(zip(np.unique(sv), rng.permutation(yv[::3])))
    yb_s, yv_s = np.array([perm_b[s] for s in sb]), np.array([perm_v[s] for s in sv])
    shuffled = EmbeddingProbeMonitor(torch.nn.Flatten(), _batches(xb, yb_s, sb), _batches(xv, yv_s, sv)).compute()
    for key in ("val_knn_auc", "val_probe_auc"):
        assert abs(shuffled[key] - 0.5) < 0.3, (key, shuffled[key])


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 6), torch.nn.BatchNorm1d(6))


@pytest.mark.parametrize("training", [True, False])
def test_features_in_eval_mode_and_mode_restored(training):
    net = _net().train(training)
    with torch.no_grad():  # running statistics that eval mode must use and not update
        net[2].running_mean.fill_(0.5)
        net[2].running_var.fill_(2.0)
    xb, yb, sb = _cohort(10, seed=9)
    monitor = EmbeddingProbeMonitor(net, _batches(xb, yb, sb), _batches(xb, yb, sb))
    monitor.compute()
    assert net.training is training and all(m.training is training for m in net.modules())
    # eval mode: the running statistics were used, not updated
    assert_allclose(net[2].running_mean, torch.full((6,), 0.5))
    assert int(net[2].num_batches_tracked) == 0
    # features(): (N, D) float32 of the encoder as called, labels and string subject ids in loader order
    net.eval()
    feats, labels, sids = monitor.features(monitor.bank_loader, torch.device("cpu"))
    with torch.no_grad():
        expected = net(torch.from_numpy(xb))
    assert feats.shape == (30, 6) and feats.dtype == np.float32
    assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)
    assert labels.tolist() == yb.tolist() and sids.tolist() == sb.tolist()


def test_callable_encoder_is_resolved_at_each_call():
    xb, yb, sb = _cohort(10, seed=10)
    holder = {"net": torch.nn.Flatten()}
    monitor = EmbeddingProbeMonitor(lambda: holder["net"], _batches(xb, yb, sb), _batches(xb, yb, sb))
    direct = EmbeddingProbeMonitor(torch.nn.Flatten(), _batches(xb, yb, sb), _batches(xb, yb, sb)).compute()
    assert monitor.compute() == pytest.approx(direct, abs=1e-12)
    holder["net"] = _net().train()
    monitor.compute()
    assert holder["net"].training


def test_runs_on_interval_epochs_and_the_last_epoch():
    net = _net().train()
    xb, yb, sb = _cohort(12, signal=3.0, seed=11)
    xv, yv, sv = _cohort(8, signal=3.0, seed=12)
    monitor = EmbeddingProbeMonitor(net, _batches(xb, yb, sb), _batches(xv, yv, sv), interval=2, prefix="probe")
    engine = Engine(lambda e, b: None)
    monitor.attach(engine)
    seen = {}

    @engine.on(Events.EPOCH_COMPLETED)
    def _record(e):  # registered after the monitor: sees what the monitor wrote this epoch
        seen[e.state.epoch] = dict(e.state.metrics)

    engine.run([0, 1, 2], max_epochs=5)
    assert [h["epoch"] for h in monitor.history] == [2, 4, 5]  # every 2nd epoch and the last
    assert seen[1] == {} and set(seen[2]) == {"probe_knn_auc", "probe_probe_auc", "probe_knn_accuracy"}
    assert seen[5] == {k: v for k, v in monitor.history[-1].items() if k != "epoch"}
    assert monitor.history[-1] == {"epoch": 5, **monitor.compute()}
    assert net.training


def test_interval_zero_attaches_nothing():
    monitor = EmbeddingProbeMonitor(_net(), _Exploding(), _Exploding(), interval=0)
    engine = Engine(lambda e, b: None)
    monitor.attach(engine)
    assert not engine.has_event_handler(monitor, Events.EPOCH_COMPLETED)
    engine.run([0, 1], max_epochs=3)
    assert engine.state.metrics == {} and monitor.history == []


def test_bank_of_one_class_raises_and_restores_the_mode():
    net = _net().train()
    xb, yb, sb = _cohort(10, seed=13)
    monitor = EmbeddingProbeMonitor(net, _batches(xb, np.zeros_like(yb), sb), _batches(xb, yb, sb))
    with pytest.raises(ValueError, match=r"bank_loader must hold patches of both classes.*labels \[0\]"):
        monitor.compute()
    assert net.training


@pytest.mark.parametrize("kwargs, match", [
    ({"interval": -1}, "interval must be >= 1 epoch, or 0"),
    ({"knn_k": 0}, "knn_k must be >= 1"),
    ({"knn_t": 0.0}, "knn_t, probe_c > 0"),
    ({"probe_c": -1.0}, "knn_t, probe_c > 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmbeddingProbeMonitor(torch.nn.Flatten(), [], [], **kwargs)
