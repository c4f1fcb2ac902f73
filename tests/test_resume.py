"""Nothing lost: a run killed with SIGKILL at any point and started again
with the same command ends with the same results as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from bam_tf.experiment import run
from bam_tf.runtime import Runtime
from bam_tf.training.callbacks import NonFiniteLossError
from bam_tf.training.checkpoints import restore_newest_readable

from conftest import debug_config

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "resume_driver.py")


def _drive(bam_dir, glue_dir, mode):
    return subprocess.run([sys.executable, DRIVER, str(bam_dir), glue_dir,
                           mode], capture_output=True, text=True,
                          timeout=600)


def _results(bam_dir):
    """Trial records without their per-epoch losses, and those losses (a
    resumed epoch's mean is summed in another order: equal to rounding)."""
    with open(os.path.join(bam_dir, "models", "resume",
                           "results.json")) as f:
        trials = json.load(f)["trials"]
    return ([{k: v for k, v in t.items() if k != "train_loss"}
             for t in trials], [t["train_loss"] for t in trials])


def _predictions(bam_dir):
    folder = os.path.join(bam_dir, "models", "resume", "outputs")
    arrays = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".npz"):
            with np.load(os.path.join(folder, name)) as data:
                arrays[name] = {k: data[k] for k in data.files}
    return arrays


@pytest.fixture(scope="module")
def clean(tiny_glue, tmp_path_factory):
    """The uninterrupted run."""
    clean = tmp_path_factory.mktemp("clean")
    done = _drive(clean, tiny_glue, "none")
    assert done.returncode == 0, done.stderr[-3000:]
    return clean


def _assert_same_as(clean, killed):
    records, losses = _results(killed)
    clean_records, clean_losses = _results(clean)
    assert records == clean_records
    assert [len(x) for x in losses] == [3, 3]
    np.testing.assert_allclose(losses, clean_losses, rtol=1e-6)
    a, b = _predictions(clean), _predictions(killed)
    assert a.keys() == b.keys() and len(a) == 12
    for name in a:
        for key in a[name]:
            np.testing.assert_array_equal(a[name][key], b[name][key])


def test_killed_anywhere_resumes_to_the_same_results(tiny_glue, tmp_path,
                                                     clean):
    killed = tmp_path / "killed"

    for mode in ("after_checkpoint", "between_trials", "during_outputs"):
        result = _drive(killed, tiny_glue, mode)
        assert result.returncode == -signal.SIGKILL, (mode,
                                                     result.stderr[-3000:])
    checkpoints = os.listdir(killed / "models" / "resume" / "checkpoints")
    assert "trial_2" in checkpoints  # trial 2 was killed, not finished
    result = _drive(killed, tiny_glue, "none")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trial 2: resumed at step" in result.stderr
    _assert_same_as(clean, killed)


@pytest.mark.parametrize("damage", ["truncate_data", "truncate_index",
                                    "remove_data", "damage_list"])
def test_restore_skips_damaged_newest_checkpoints(tmp_path, caplog, damage):
    import tensorflow as tf
    variable = tf.Variable(0.0)
    checkpoint = tf.train.Checkpoint(v=variable)
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path),
                                         max_to_keep=2)
    for step in (1, 2):
        variable.assign(float(step))
        manager.save(checkpoint_number=step)
    variable.assign(-1.0)
    newest = tmp_path / ("ckpt-2.index" if damage == "truncate_index"
                         else "ckpt-2.data-00000-of-00001")
    if damage.startswith("truncate"):
        with open(newest, "r+b") as f:
            f.truncate(os.path.getsize(newest) // 2)
    elif damage == "remove_data":
        os.remove(newest)
    else:  # the checkpoint list itself (its older entry still there)
        (tmp_path / "checkpoint").write_text("not a checkpoint state {")
    path = restore_newest_readable(checkpoint, str(tmp_path), trial=1)
    if damage == "damage_list":  # found by its files: the newest is fine
        assert path == str(tmp_path / "ckpt-2")
        assert variable.numpy() == 2.0
        # TensorFlow names the file it ignores.
        assert f"{tmp_path / 'checkpoint'}: Checkpoint ignored" in (
            caplog.text)
        return
    assert path == str(tmp_path / "ckpt-1") and variable.numpy() == 1.0
    assert f"checkpoint {tmp_path / 'ckpt-2'} is damaged" in caplog.text


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(
        tiny_glue, tmp_path, clean):
    damage = "truncate_index"  # "file is too short to be an sstable"
    result = _drive(tmp_path, tiny_glue, "after_second_checkpoint")
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    folder = tmp_path / "models" / "resume" / "checkpoints" / "trial_1"
    assert {"ckpt-5.index", "ckpt-10.index"} <= set(os.listdir(folder))
    newest = folder / ("ckpt-10.data-00000-of-00001"
                       if damage == "truncate_data" else "ckpt-10.index")
    with open(newest, "r+b") as f:
        f.truncate(os.path.getsize(newest) // 2)
    result = _drive(tmp_path, tiny_glue, "none")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"checkpoint {folder / 'ckpt-10'} is damaged" in result.stderr
    assert "trial 1: resumed at step 5 of" in result.stderr
    _assert_same_as(clean, tmp_path)


def test_same_seed_same_results_to_the_last_digit(tiny_glue, tmp_path):
    config = debug_config(tmp_path, tiny_glue, "a", ["rte"],
                          padding="max_length", n_writes_test=0,
                          n_writes_distill=0, num_train_epochs=2)
    first = run.train_and_evaluate(config, verbose=0)["trials"]
    second = run.train_and_evaluate(config.replace(model_name="b"),
                                    verbose=0)["trials"]
    assert first == second


def test_nan_loss_stops_naming_step_and_task(tiny_glue, tmp_path,
                                             monkeypatch):
    import tensorflow as tf
    from bam_tf.model.bam_model import BamModel
    original = BamModel.call

    def poisoned(self, inputs, training=False):
        outputs = original(self, inputs, training=training)
        if training:  # from the 7th step on, the rte head outputs NaN
            outputs["rte"] += tf.where(self.optimizer.iterations >= 6,
                                       np.nan, 0.0)
        return outputs
    monkeypatch.setattr(BamModel, "call", poisoned)
    config = debug_config(tmp_path, tiny_glue, "nan", ["rte"],
                          padding="max_length", num_train_epochs=3)
    with pytest.raises(NonFiniteLossError,
                       match=r"loss became nan at step 7 \(task rte\)"):
        run.train_and_evaluate(
            config, verbose=0,
            runtime=Runtime(save_checkpoints_steps=4))
    folder = tmp_path / "models" / "nan" / "checkpoints" / "trial_1"
    assert sorted(os.listdir(folder)) == [
        "checkpoint", "ckpt-4.data-00000-of-00001", "ckpt-4.index",
        "train_loss-4.json"]
