"""Training callbacks: exact stopping (at the last step, on a non-finite
loss, on a lost hold), periodic checkpoints, TensorBoard, dev scores."""

import math
import os
import time

import keras
import tensorflow as tf
from absl import logging

from bam_tf.errors import BamError


class StopAtStep(keras.callbacks.Callback):
    """Ends training at exactly `total_steps` (epochs may be fractional)."""

    def __init__(self, total_steps):
        super().__init__()
        self.total_steps = total_steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.total_steps:
            self.model.stop_training = True


class StopIfHoldLost(keras.callbacks.Callback):
    """Stops training as soon as the heartbeat finds the trial taken over
    (this process was paused past the claim timeout): `hold.check()`
    raises then (`bam_tf.store.trial_hold.TrialHold`)."""

    def __init__(self, hold):
        super().__init__()
        self.hold = hold

    def on_train_batch_end(self, batch, logs=None):
        if self.hold.lost:
            self.hold.check()


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
