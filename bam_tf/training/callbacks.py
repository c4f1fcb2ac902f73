"""Training callbacks: exact stopping, checkpoints, per-epoch losses,
TensorBoard, dev scores."""

import json
import math
import os
import time

import keras
import tensorflow as tf
from absl import logging

from bam_tf.errors import BamError
from bam_tf.io_utils import atomic_write_json


class StopAtStep(keras.callbacks.Callback):
    """Ends training at exactly `total_steps` (epochs may be fractional)."""

    def __init__(self, total_steps):
        super().__init__()
        self.total_steps = total_steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.total_steps:
            self.model.stop_training = True


class TensorBoardLogger(keras.callbacks.Callback):
    """Writes the training step's logs (loss, loss per task, lambda,
    learning rate) every `every` steps and at the last step, against the
    optimizer's step, to `log_dir/train`; and, given `evaluate`, dev scores
    after every epoch to `log_dir/dev`.

    Keras's own TensorBoard callback keeps its batch-level `record_if` in
    force during epoch-end writes, so epoch summaries vanish whenever the
    epoch does not end on a multiple of `update_freq`; hence this one.
    """

    def __init__(self, log_dir, every=10, evaluate=None):
        super().__init__()
        self.every = every
        self.evaluate = evaluate
        self.train_writer = tf.summary.create_file_writer(
            os.path.join(log_dir, "train"))
        self.dev_writer = (tf.summary.create_file_writer(
            os.path.join(log_dir, "dev")) if evaluate else None)

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if logs and (step % self.every == 0 or self.model.stop_training):
            with self.train_writer.as_default():
                for name, value in logs.items():
                    tf.summary.scalar(name, value, step=step)

    def on_epoch_end(self, epoch, logs=None):
        self.train_writer.flush()
        if self.evaluate is None:
            return
        scores, avg = self.evaluate()
        step = self._step()
        with self.dev_writer.as_default():
            for task, metrics in scores.items():
                for name, value in metrics.items():
                    tf.summary.scalar(f"{task}/{name}", value, step=step)
            tf.summary.scalar("avg", avg, step=step)
        self.dev_writer.flush()
        logging.info("epoch %d dev avg %.2f %s", epoch + 1, avg,
                     {t: round(m["score"], 2) for t, m in scores.items()})

    def on_train_end(self, logs=None):
        # Flushed, not closed: a resumed trial calls `fit` twice
        # (`TrialTrainer.fit`).
        for writer in (self.train_writer, self.dev_writer):
            if writer is not None:
                writer.flush()

    def close(self):
        for writer in (self.train_writer, self.dev_writer):
            if writer is not None:
                writer.close()


class NonFiniteLossError(BamError, RuntimeError):
    """Training produced a NaN or infinite loss."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops at the first step whose loss is NaN or infinite, naming the
    step and the task(s); nothing is saved after it, so the last checkpoint
    is the last good state."""

    def __init__(self, task_names):
        super().__init__()
        self.task_names = task_names

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        step = int(self.model.optimizer.iterations.numpy())
        bad = [t for t in self.task_names
               if not math.isfinite(float(logs.get(f"loss_{t}", 0.0)))]
        raise NonFiniteLossError(
            f"Training stopped: the loss became {float(loss)} at step {step} "
            f"(task{'s' if len(bad) > 1 else ''} {', '.join(bad) or '?'}). "
            "The last good checkpoint is kept; lower --learning_rate or check "
            "the data and teacher targets.")


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Calls `save(step)` every `every_steps` steps, or every
    `every_seconds` seconds when no step count is given.

    `save` writes a checkpoint through `tf.train.CheckpointManager`, which
    writes the checkpoint's files first and its index last, so a kill
    mid-save leaves the previous checkpoint in force.
    """

    def __init__(self, save, every_steps=None, every_seconds=300.0):
        super().__init__()
        self.save = save
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self._last = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        due = (step % self.every_steps == 0 if self.every_steps
               else time.monotonic() - self._last >= self.every_seconds)
        if due and not self.model.stop_training:
            self.save(step)
            self._last = time.monotonic()


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
