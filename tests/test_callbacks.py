"""EpochLosses: per-epoch mean losses across a kill and a resume, computed
by hand."""

import json
import os
import types

import keras
import pytest

from bam_tf.training.checkpoints import EpochLosses


class _Model:
    """What the callback reads: the optimizer's step."""

    def __init__(self):
        self.optimizer = types.SimpleNamespace(
            iterations=keras.Variable(0, dtype="int64"))


def _fit_epoch(callback, model, epoch, step_losses):
    """One `fit` epoch: Keras reports the running mean of the epoch's
    steps so far after each step."""
    callback.on_epoch_begin(epoch)
    for k, _ in enumerate(step_losses, 1):
        model.optimizer.iterations.assign_add(1)
        callback.on_train_batch_end(k - 1, {"loss": sum(step_losses[:k]) / k})


def test_means_per_epoch_across_a_resume(tmp_path):
    # Steps 1-5 with losses 1..5; epochs of 3 steps: means 2.0 and 4.5.
    first = EpochLosses(str(tmp_path), epoch_steps=3, total_steps=5)
    model = _Model()
    first.set_model(model)
    _fit_epoch(first, model, 0, [1.0, 2.0])  # killed after step 2's save
    first.save(2)
    assert json.loads((tmp_path / "train_loss-2.json").read_text()) == {
        "step": 2, "sums": [3.0, 0.0], "counts": [2, 0]}

    resumed = EpochLosses(str(tmp_path), epoch_steps=3, total_steps=5)
    resumed.set_model(model)
    assert resumed.restore(2)
    _fit_epoch(resumed, model, 0, [3.0])  # the rest of epoch 0 alone
    _fit_epoch(resumed, model, 1, [4.0, 5.0])
    assert resumed.means() == [2.0, 4.5]

    resumed.save(5)
    resumed.prune([5])
    assert os.listdir(tmp_path) == ["train_loss-5.json"]


def test_epochs_before_an_unrecorded_resume_have_no_mean(tmp_path):
    losses = EpochLosses(str(tmp_path), epoch_steps=3, total_steps=5)
    model = _Model()
    model.optimizer.iterations.assign(3)  # a checkpoint without sums
    losses.set_model(model)
    assert not losses.restore(3)
    _fit_epoch(losses, model, 1, [4.0, 5.0])
    assert losses.means() == [None, 4.5]


def test_a_fit_epoch_across_two_epochs_is_refused(tmp_path):
    losses = EpochLosses(str(tmp_path), epoch_steps=2, total_steps=4)
    model = _Model()
    losses.set_model(model)
    with pytest.raises(RuntimeError, match="spans epochs 0 and 1"):
        _fit_epoch(losses, model, 0, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("text", [
    json.dumps({"step": 4, "sums": [1.0], "counts": [4]}),  # another run's
    '{"step": 4, "sums": [1.0, ',  # cut short
])
def test_a_damaged_sums_file_is_named_and_treated_as_missing(tmp_path,
                                                             caplog, text):
    (tmp_path / "train_loss-4.json").write_text(text)
    losses = EpochLosses(str(tmp_path), epoch_steps=3, total_steps=5)
    assert losses.restore(4) is False
    assert "train_loss-4.json" in caplog.text
    assert "treated as missing" in caplog.text
    assert losses.sums == [0.0, 0.0] and losses.counts == [0, 0]
