"""One trial's training: fit to the last step, checkpointing as it goes,
and resume where a killed run stopped as if it had never stopped."""

import glob
import math
import os
import shutil

import tensorflow as tf
from absl import logging

from bam_tf.distribute import is_multi_worker
from bam_tf.training.callbacks import EpochLosses
from bam_tf.training.callbacks import PeriodicCheckpoint
from bam_tf.training.callbacks import StopAtStep
from bam_tf.training.callbacks import StopOnNonFiniteLoss
from bam_tf.training.callbacks import TensorBoardLogger
from bam_tf.training.checkpoints import restore_newest_readable


class TrialTrainer:
    """Trains a compiled model on `train_ds` for `total_steps`, saving
    checkpoints (weights, optimizer state, dropout's random state and the
    epoch loss sums) to `checkpoint_dir`.

    Args:
        model: a built, compiled `BamModel` whose optimizer is built.
        train_ds: the trial's training stream (a pure function of its
            seed, so a resumed run skips the batches already trained on).
        checkpoint_dir: where checkpoints go (two are kept).
        log_dir: TensorBoard's folder for this trial.
        epoch_steps, total_steps: the length of an epoch and of training.
        runtime: a `bam_tf.runtime.Runtime` (checkpoint frequency).
        trial: the trial's number, for messages.
        task_names: the tasks whose losses are watched for NaN.
        evaluate: called at the end of each epoch for dev scores, or None.
        before_save: called before anything is written (a lost claim
            raises there).
        callbacks: more Keras callbacks.
        verbose: `fit`'s verbosity.

    Example:
    >>> trainer = TrialTrainer(model, train_ds, "ckpt", "logs", 10, 30,
    ...                        Runtime(), trial=1, task_names=["rte"])
    >>> trainer.resume()  # 0 without checkpoints
    >>> trainer.fit()
    """

    def __init__(self, model, train_ds, checkpoint_dir, log_dir, epoch_steps,
                 total_steps, runtime, trial, task_names, evaluate=None,
                 before_save=None, callbacks=(), verbose=2):
        self.model = model
        self.train_ds = train_ds
        self.log_dir = log_dir
        self.epoch_steps = epoch_steps
        self.total_steps = total_steps
        self.runtime = runtime
        self.trial = trial
        self.task_names = list(task_names)
        self.evaluate = evaluate
        self.before_save = before_save or (lambda: None)
        self.callbacks = list(callbacks)
        self.verbose = verbose
        # Dropout's random state is no weight; without it a resumed run
        # would draw other masks than an uninterrupted one.
        seed_states = [v.value for v in model.variables
                       if v.name == "seed_generator_state"]
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, seed_states=seed_states)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, checkpoint_dir, max_to_keep=2)
        self.losses = EpochLosses(checkpoint_dir, epoch_steps, total_steps)

    @property
    def step(self):
        return int(self.model.optimizer.iterations.numpy())

    def save(self, step):
        self.before_save()
        self.losses.save(step)
        try:
            self.manager.save(checkpoint_number=step)
        except BaseException:
            # A save cut short (a full disk, a signal) leaves TensorFlow's
            # staging folder; the checkpoints before it stay whole.
            for staging in glob.glob(os.path.join(
                    self.manager.directory, f"ckpt-{step}_temp*")):
                shutil.rmtree(staging, ignore_errors=True)
            raise
        self.losses.prune(int(path.rsplit("-", 1)[1])
                          for path in self.manager.checkpoints)

    def resume(self, directory=None):
        """Restores the newest readable checkpoint of `directory` (default:
        this trainer's own; a non-chief worker reads the chief's). Returns
        the step training goes on from."""
        directory = directory or self.manager.directory
        if not os.path.isdir(directory):
            return 0
        latest = restore_newest_readable(self.checkpoint, directory,
                                         self.trial)
        if not latest:
            return 0
        step = self.step
        logging.info("trial %d: resumed at step %d of %d from %s",
                     self.trial, step, self.total_steps, latest)
        own = os.path.abspath(directory) == os.path.abspath(
            self.manager.directory)
        if own and not self.losses.restore(step):
            logging.warning(
                "trial %d: no loss sums were saved with %s; the mean "
                "training loss of the epochs before it is unknown (None).",
                self.trial, latest)
        return step

    def fit(self):
        """Trains from the current step to `total_steps` and saves the last
        checkpoint. Returns the mean training loss per epoch."""
        if self.step < self.total_steps:
            self._fit()
            self.save(self.total_steps)
        return self.losses.means()

    def _fit(self):
        every_steps = self.runtime.save_checkpoints_steps
        if every_steps is None and is_multi_worker(
                self.model.distribute_strategy):
            # Workers must save together; their clocks do not agree, their
            # steps do: once per epoch unless told otherwise.
            every_steps = self.epoch_steps
        tensorboard = TensorBoardLogger(self.log_dir, evaluate=self.evaluate)
        callbacks = [StopOnNonFiniteLoss(self.task_names), self.losses,
                     StopAtStep(self.total_steps),
                     PeriodicCheckpoint(self.save, every_steps,
                                        self.runtime.save_checkpoints_secs),
                     tensorboard, *self.callbacks]
        try:
            for first, last, steps in self._epoch_parts():
                step = self.step
                if step >= self.total_steps:
                    break
                # The stream is a pure function of the seed: skipping the
                # batches already trained on puts a resumed run where the
                # killed one was.
                self.model.fit(
                    self.train_ds.skip(step) if step else self.train_ds,
                    initial_epoch=first, epochs=last,
                    steps_per_epoch=min(steps, self.total_steps - step),
                    callbacks=callbacks, verbose=self.verbose,
                    # The mixture is shuffled by its seed; Keras would
                    # ignore shuffle=True on a dataset, with a warning.
                    shuffle=False)
        finally:
            tensorboard.close()

    def _epoch_parts(self):
        """`fit`'s epochs have one length; a run resumed mid-epoch first
        finishes that epoch alone, so that epochs (dev scores, their
        losses) end at the same steps as in an uninterrupted run."""
        num_epochs = math.ceil(self.total_steps / self.epoch_steps)
        epoch, done = divmod(self.step, self.epoch_steps)
        parts = []
        if done:
            parts.append((epoch, epoch + 1, self.epoch_steps - done))
            epoch += 1
        parts.append((epoch, num_epochs, self.epoch_steps))
        return parts
