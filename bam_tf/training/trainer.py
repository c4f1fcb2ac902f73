"""One trial's training: fit to the last step, checkpointing as it goes,
and resume where a killed run stopped as if it had never stopped."""

import math

from absl import logging

from bam_tf.distribute import is_multi_worker
from bam_tf.training.callbacks import PeriodicCheckpoint
from bam_tf.training.callbacks import StopAtStep
from bam_tf.training.callbacks import StopIfHoldLost
from bam_tf.training.callbacks import StopOnNonFiniteLoss
from bam_tf.training.callbacks import TensorBoardLogger
from bam_tf.training.checkpoints import TrialCheckpoints


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
        hold: the trial's hold (`bam_tf.store.trial_hold`), or None:
            checked before anything is written, and training stops as
            soon as it is lost (two processes must never write one
            trial's checkpoints).
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
                 hold=None, callbacks=(), verbose=2):
        self.model = model
        self.train_ds = train_ds
        self.log_dir = log_dir
        self.epoch_steps = epoch_steps
        self.total_steps = total_steps
        self.runtime = runtime
        self.trial = trial
        self.task_names = list(task_names)
        self.evaluate = evaluate
        self.hold = hold
        self.callbacks = list(callbacks)
        self.verbose = verbose
        self.checkpoints = TrialCheckpoints(model, checkpoint_dir,
                                            epoch_steps, total_steps, trial)

    @property
    def step(self):
        return int(self.model.optimizer.iterations.numpy())

    def save(self, step):
        if self.hold:
            self.hold.check()
        self.checkpoints.save(step)

    def resume(self, directory=None):
        """Restores the newest readable checkpoint of `directory` (default:
        this trainer's own; a non-chief worker reads the chief's). Returns
        the step training goes on from."""
        latest = self.checkpoints.restore(directory)
        if not latest:
            return 0
        logging.info("trial %d: resumed at step %d of %d from %s",
                     self.trial, self.step, self.total_steps, latest)
        return self.step

    def fit(self):
        """Trains from the current step to `total_steps` and saves the last
        checkpoint. Returns the mean training loss per epoch."""
        if self.step < self.total_steps:
            self._fit()
            self.save(self.total_steps)
        return self.checkpoints.losses.means()

    def _fit(self):
        every_steps = self.runtime.save_checkpoints_steps
        if every_steps is None and is_multi_worker(
                self.model.distribute_strategy):
            # Workers must save together; their clocks do not agree, their
            # steps do: once per epoch unless told otherwise.
            every_steps = self.epoch_steps
        parts = self._epoch_parts()
        tensorboard = TensorBoardLogger(self.log_dir, evaluate=self.evaluate)
        callbacks = [StopOnNonFiniteLoss(self.task_names),
                     self.checkpoints.losses,
                     StopAtStep(self.total_steps),
                     PeriodicCheckpoint(self.save, every_steps,
                                        self.runtime.save_checkpoints_secs),
                     tensorboard, *self.callbacks]
        if self.hold:
            callbacks.append(StopIfHoldLost(self.hold))
        try:
            for first, last, steps in parts:
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
