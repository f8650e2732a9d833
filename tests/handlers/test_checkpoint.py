"""AtomicCheckpointSaver: one fixed interval file, no temporary files, usual permissions, best model kept on resume."""

from __future__ import annotations

import os

import pytest
import torch
from ignite.engine import Engine, Events

from monai_osteo.handlers.checkpoint import AtomicCheckpointSaver, last_checkpoint


@pytest.fixture
def umask():
    """Run with a known umask (restored afterwards)."""
    old = os.umask(0o022)
    yield 0o022
    os.umask(old)


def _trainer(net):
    def step(engine, batch):
        with torch.no_grad():
            net.weight.add_(1.0)  # the weights change every iteration: each epoch's checkpoint differs

    return Engine(step)


def _scored_engine(scores):
    """An evaluator-like engine whose key metric ``f1`` takes the next of ``scores`` at each epoch's end."""
    engine = Engine(lambda e, b: None)
    it = iter(scores)

    @engine.on(Events.EPOCH_COMPLETED)
    def _metrics(e):  # registered before the saver: the metric is set when the saver reads it
        e.state.metrics["f1"] = next(it)
        e.state.key_metric_name = "f1"

    return engine


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_interval_checkpoint_single_file_overwritten(tmp_path, umask, mask):
    os.umask(mask)
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    trainer = _trainer(net)
    saver = AtomicCheckpointSaver(str(tmp_path / "ckpt"), save_dict={"model": net}, save_interval=1,
                                  interval_filename="last.pt", epoch_level=True)
    saver.attach(trainer)
    seen = []

    @trainer.on(Events.EPOCH_COMPLETED)
    def _look(e):
        seen.append((sorted(os.listdir(tmp_path / "ckpt")), torch.load(tmp_path / "ckpt" / "last.pt")["weight"]))

    trainer.run([0, 1], max_epochs=3)
    assert [names for names, _ in seen] == [["last.pt"]] * 3  # one file from the first epoch on, no temp files
    assert not torch.equal(seen[0][1], seen[2][1])  # overwritten every epoch
    path = tmp_path / "ckpt" / "last.pt"
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask  # group/others read as the umask allows
    state = torch.load(path)
    assert state.keys() == net.state_dict().keys()
    for k, v in net.state_dict().items():
        assert torch.equal(state[k], v)
    assert last_checkpoint(tmp_path / "ckpt") == str(path)


def test_interval_checkpoint_without_fixed_name_keeps_monai_names(tmp_path, umask):
    net = torch.nn.Linear(2, 1)
    trainer = _trainer(net)
    AtomicCheckpointSaver(str(tmp_path), save_dict={"model": net}, save_interval=1, n_saved=2).attach(trainer)
    trainer.run([0], max_epochs=3)
    assert sorted(os.listdir(tmp_path)) == ["model_epoch=2.pt", "model_epoch=3.pt"]
    assert all(os.stat(tmp_path / n).st_mode & 0o777 == 0o644 for n in os.listdir(tmp_path))


def test_key_metric_checkpoint_keeps_the_best(tmp_path, umask):
    net = torch.nn.Linear(3, 2)
    weights = []
    engine = _scored_engine([0.5, 0.8, 0.3])

    @engine.on(Events.EPOCH_STARTED)
    def _change(e):
        with torch.no_grad():
            net.weight.add_(1.0)
        weights.append(net.weight.clone())

    saver = AtomicCheckpointSaver(str(tmp_path), save_dict={"model": net}, save_key_metric=True,
                                  key_metric_filename="best.pt")
    saver.attach(engine)
    engine.run([0], max_epochs=3)
    assert os.listdir(tmp_path) == ["best.pt"]
    assert torch.equal(torch.load(tmp_path / "best.pt")["weight"], weights[1])  # epoch 2 scored best
    assert [item[0] for item in saver.state_dict()["_saved"]] == [0.8]
    assert os.stat(tmp_path / "best.pt").st_mode & 0o777 == 0o644


def test_state_dict_resume_does_not_overwrite_best(tmp_path, umask):
    net = torch.nn.Linear(3, 2)
    best = AtomicCheckpointSaver(str(tmp_path), save_dict={"model": net}, save_key_metric=True,
                                 key_metric_filename="best.pt")
    evaluator = _scored_engine([0.7, 0.9])
    best.attach(evaluator)
    # the interval checkpoint carries the best saver's record, as in the bundles' train configs
    last = AtomicCheckpointSaver(str(tmp_path), save_dict={"model": net, "best_model": best}, save_interval=1,
                                 interval_filename="last.pt")
    last.attach(evaluator)
    evaluator.run([0], max_epochs=2)
    best_bytes = (tmp_path / "best.pt").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "last.pt"]
    record = torch.load(tmp_path / "last.pt")["best_model"]
    assert [item[0] for item in record["_saved"]] == [0.9]

    with torch.no_grad():
        net.weight.zero_()  # a resumed run whose model differs and scores worse
    resumed = AtomicCheckpointSaver(str(tmp_path), save_dict={"model": net}, save_key_metric=True,
                                    key_metric_filename="best.pt")
    resumed.load_state_dict(record)
    assert resumed.state_dict() == best.state_dict()
    again = _scored_engine([0.6])
    resumed.attach(again)
    again.run([0], max_epochs=1)
    assert (tmp_path / "best.pt").read_bytes() == best_bytes  # a worse score does not replace the best model

    fresh = AtomicCheckpointSaver(str(tmp_path), save_dict={"model": net}, save_key_metric=True,
                                  key_metric_filename="best.pt")  # without the record: overwritten (MONAI's default)
    worse = _scored_engine([0.6])
    fresh.attach(worse)
    worse.run([0], max_epochs=1)
    assert torch.equal(torch.load(tmp_path / "best.pt")["weight"], torch.zeros(2, 3))
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "last.pt"]


class _Flaky:
    """A save_dict entry whose state cannot be pickled once ``broken``: the write fails mid-way."""

    def __init__(self):
        self.broken = False

    def state_dict(self):
        return {"f": (lambda: 0) if self.broken else 0}

    def load_state_dict(self, state):
        pass


def test_interval_checkpoint_failed_write_keeps_previous(tmp_path, umask):
    net, flaky = torch.nn.Linear(2, 1), _Flaky()
    trainer = _trainer(net)
    AtomicCheckpointSaver(str(tmp_path), save_dict={"model": net, "flaky": flaky}, save_interval=1,
                          interval_filename="last.pt").attach(trainer)
    trainer.add_event_handler(Events.EPOCH_STARTED(once=2), lambda e: setattr(flaky, "broken", True))
    before = []
    trainer.add_event_handler(Events.EPOCH_STARTED(once=2),
                              lambda e: before.append((tmp_path / "last.pt").read_bytes()))
    with pytest.raises(Exception):  # noqa: B017 - pickling the lambda fails inside torch.save
        trainer.run([0], max_epochs=2)
    assert os.listdir(tmp_path) == ["last.pt"]
    assert (tmp_path / "last.pt").read_bytes() == before[0]


def test_key_metric_checkpoint_failed_write_keeps_previous_best(tmp_path, umask):
    net, flaky = torch.nn.Linear(2, 1), _Flaky()
    engine = _scored_engine([0.5, 0.8])
    AtomicCheckpointSaver(str(tmp_path), save_dict={"model": net, "flaky": flaky}, save_key_metric=True,
                          key_metric_filename="best.pt").attach(engine)
    engine.add_event_handler(Events.EPOCH_STARTED(once=2), lambda e: setattr(flaky, "broken", True))
    with pytest.raises(Exception):  # noqa: B017 - pickling the lambda fails inside torch.save
        engine.run([0], max_epochs=2)
    assert os.listdir(tmp_path) == ["best.pt"]  # the previous best model, not nothing


def test_state_dict_without_key_metric_is_empty(tmp_path):
    saver = AtomicCheckpointSaver(str(tmp_path), save_dict={"model": torch.nn.Linear(1, 1)}, save_interval=1)
    assert saver.state_dict() == {}


def test_last_checkpoint(tmp_path):
    assert last_checkpoint(None) is None
    assert last_checkpoint(tmp_path) is None
    (tmp_path / "last.pt").mkdir()  # a folder of that name is not a checkpoint
    assert last_checkpoint(tmp_path) is None
    (tmp_path / "other.pt").write_bytes(b"x")
    assert last_checkpoint(tmp_path, "other.pt") == str(tmp_path / "other.pt")
    assert last_checkpoint(str(tmp_path), filename="other.pt") == str(tmp_path / "other.pt")
    assert last_checkpoint(tmp_path / "missing_folder") is None
