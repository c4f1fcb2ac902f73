"""A trial's checkpoints: written whole or not at all, read back so that
a damaged file costs at most the steps since the one before it, each with
the loss sums of the epochs so far."""

import glob
import json
import math
import os
import shutil

import keras
import tensorflow as tf
from absl import logging

from bam_tf.errors import RunError
from bam_tf.io_utils import atomic_write_json


class TrialCheckpoints:
    """The checkpoints of one trial in `directory` (two kept): the model's
    weights, the optimizer's state, dropout's random state and the epoch
    loss sums (`losses`, an `EpochLosses`, itself a callback of `fit`).

    Example:

    ```python
    checkpoints = TrialCheckpoints(model, "ckpt", epoch_steps=10,
                                   total_steps=30, trial=1)
    checkpoints.restore()  # None without checkpoints
    checkpoints.save(step)
    ```
    """

    def __init__(self, model, directory, epoch_steps, total_steps, trial):
        self.trial = trial
        # Dropout's random state is no weight; without it a resumed run
        # would draw other masks than an uninterrupted one.
        seed_states = [v.value for v in model.variables
                       if v.name == "seed_generator_state"]
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, seed_states=seed_states)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=2)
        self.losses = EpochLosses(directory, epoch_steps, total_steps)

    @property
    def directory(self):
        return self.manager.directory

    def save(self, step):
        self.losses.save(step)
        try:
            self.manager.save(checkpoint_number=step)
        except BaseException:
            # A save cut short (a full disk, a signal) leaves TensorFlow's
            # staging folder; the checkpoints before it stay whole.
            for staging in glob.glob(os.path.join(
                    self.directory, f"ckpt-{step}_temp*")):
                shutil.rmtree(staging, ignore_errors=True)
            raise
        self.losses.prune(int(path.rsplit("-", 1)[1])
                          for path in self.manager.checkpoints)

    def restore(self, directory=None):
        """Restores the newest readable checkpoint of `directory` (default:
        this trial's own; a non-chief worker reads the chief's) and, from
        its own, the loss sums saved with it. Returns the path restored,
        or None."""
        directory = directory or self.directory
        if not os.path.isdir(directory):
            return None
        latest = restore_newest_readable(self.checkpoint, directory,
                                         self.trial)
        own = os.path.abspath(directory) == os.path.abspath(self.directory)
        if latest and own and not self.losses.restore(
                int(self.checkpoint.optimizer.iterations.numpy())):
            logging.warning(
                "trial %d: no loss sums were saved with %s; the mean "
                "training loss of the epochs before it is unknown (None).",
                self.trial, latest)
        return latest


def _unreadable(path):
    """Why the checkpoint at `path` cannot be restored, or None: every
    tensor is read, so a truncated data file is found before any variable
    is overwritten."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    # The reader is a C++ binding: a short file surfaces as any of these.
    except (tf.errors.OpError, ValueError, OSError, IndexError, KeyError,
            RuntimeError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return None


def _checkpoints_newest_first(directory):
    try:
        # A damaged list is ignored (with TensorFlow's warning naming it).
        state = tf.train.get_checkpoint_state(directory)
        paths = list(state.all_model_checkpoint_paths) if state else []
    except (tf.errors.OpError, ValueError) as e:
        logging.warning("%s: unreadable checkpoint list (%s); looking for "
                        "checkpoint files instead.",
                        os.path.join(directory, "checkpoint"), e)
        paths = []
    if not paths:
        paths = [p[:-len(".index")] for p in glob.glob(
            os.path.join(directory, "ckpt-*.index"))]
    number = lambda p: int(p.rsplit("-", 1)[1]) if p.rsplit(
        "-", 1)[1].isdigit() else -1
    return sorted(paths, key=number, reverse=True)


def restore_newest_readable(checkpoint, directory, trial):
    """Restores the newest checkpoint of `directory` that reads back whole;
    a damaged newer one is skipped with a warning naming it. Returns the
    path restored, or None (none, or none readable: the trial starts
    again, and ends as an uninterrupted one would)."""
    paths = _checkpoints_newest_first(directory)
    for path in paths:
        problem = _unreadable(path)
        if problem:
            logging.warning("trial %d: checkpoint %s is damaged (%s); "
                            "trying the one before it.", trial, path,
                            problem)
            continue
        try:
            checkpoint.restore(path).assert_consumed()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise RunError(
                f"{path}: the checkpoint does not fit this run's model "
                f"({type(e).__name__}: {str(e).splitlines()[0]}). Delete "
                f"{directory} to start trial {trial} again.") from None
        return path
    if paths:
        logging.warning("trial %d: no readable checkpoint in %s; the trial "
                        "starts again from step 0.", trial, directory)
    return None


class EpochLosses(keras.callbacks.Callback):
    """The mean training loss of each epoch, exact across kills and resumes.

    A killed run loses the loss of the steps it ran since its last
    checkpoint, and Keras's running mean restarts with every `fit`. So the
    loss sums and step counts per epoch are written to a small file for
    each checkpoint step (`train_loss-<step>.json`, before the checkpoint
    itself, so every checkpoint has one), and a resumed run starts from the
    file of the step it restored. Epochs are counted from the optimizer's
    step, not from `fit`'s epoch index.

    An epoch whose steps were not all counted (a run resumed from a
    checkpoint written without these files) has no mean: None.

    Example:

    ```python
    losses = EpochLosses(folder, epoch_steps=100, total_steps=250)
    losses.restore(start_step)  # False: no file for that step
    model.fit(..., callbacks=[losses, ...])
    losses.means()  # [mean of steps 1-100, 101-200, 201-250]
    ```
    """

    def __init__(self, folder, epoch_steps, total_steps):
        super().__init__()
        self.folder = folder
        self.epoch_steps = epoch_steps
        self.total_steps = total_steps
        n = math.ceil(total_steps / epoch_steps)
        self.sums = [0.0] * n
        self.counts = [0] * n
        # (epoch, step where Keras's running mean began, the epoch's sum
        # and count then): set when each `fit` epoch begins.
        self._base = None

    def _path(self, step):
        return os.path.join(self.folder, f"train_loss-{step}.json")

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def restore(self, step):
        """Takes the sums written with the checkpoint of `step`; returns
        False (and keeps zeros) when there is no such file."""
        path = self._path(step)
        try:
            with open(path) as f:
                saved = json.load(f)
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as e:  # a damaged file: as if none
            logging.warning("%s: unreadable loss sums (%s); treated as "
                            "missing.", path, e)
            return False
        if not isinstance(saved, dict) or (
                saved.get("step") != step
                or len(saved.get("sums", ())) != len(self.sums)
                or len(saved.get("counts", ())) != len(self.counts)):
            logging.warning("%s: expected the loss sums of step %d over %d "
                            "epochs; treated as missing.", path, step,
                            len(self.sums))
            return False
        self.sums = [float(x) for x in saved["sums"]]
        self.counts = [int(x) for x in saved["counts"]]
        return True

    def on_epoch_begin(self, epoch, logs=None):
        # Keras resets its running mean here: what it reports from now on
        # covers the steps after this one, all in the epoch of the next.
        step = self._step()
        ours = step // self.epoch_steps
        self._base = (ours, step, self.sums[ours], self.counts[ours])

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        step = self._step()
        epoch = (step - 1) // self.epoch_steps
        if self._base[0] != epoch:
            raise RuntimeError(
                f"fit's epoch spans epochs {self._base[0]} and {epoch} of "
                f"{self.epoch_steps} steps: its running mean cannot be split.")
        _, start, base_sum, base_count = self._base
        k = step - start
        self.sums[epoch] = base_sum + float(loss) * k
        self.counts[epoch] = base_count + k

    def save(self, step):
        atomic_write_json(self._path(step), {
            "step": step, "sums": self.sums, "counts": self.counts})

    def prune(self, keep_steps):
        """Removes the files of checkpoints no longer kept."""
        keep = {os.path.basename(self._path(s)) for s in keep_steps}
        for name in os.listdir(self.folder):
            if (name.startswith("train_loss-") and name.endswith(".json")
                    and name not in keep):
                os.remove(os.path.join(self.folder, name))

    def means(self):
        out = []
        for epoch, (total, count) in enumerate(zip(self.sums, self.counts)):
            expected = min(self.epoch_steps,
                           self.total_steps - epoch * self.epoch_steps)
            out.append(total / count if count == expected else None)
        return out
