"""One trial of a run: its seed, encoder, model and data stream; training;
then its weights, predictions, scores and output files."""

import keras
from absl import logging

from bam_tf.data import pipeline
from bam_tf.data.batching import Batching
from bam_tf.data.sampling import steps_per_epoch
from bam_tf.encoders.builder import build_encoder
from bam_tf.experiment.evaluation import evaluate
from bam_tf.experiment.evaluation import output_splits
from bam_tf.experiment.evaluation import predict_splits
from bam_tf.experiment.evaluation import write_outputs
from bam_tf.experiment.hparams import write_trial_hparams
from bam_tf.model.factory import build_model
from bam_tf.model.factory import compile_for_training
from bam_tf.training.checkpoints import save_weights
from bam_tf.training.initialization import start_from_weights
from bam_tf.training.trainer import TrialTrainer


def trial_seed(config, trial):
    return config.seed + trial - 1


def run_trial(inputs, folder, trial, strategy, runtime, verbose,
              scratch=None, hold=None):
    """Trains and scores one trial of `inputs` (a `RunInputs`) in `folder`
    (a `ModelDir`); returns its record for results.json. With `scratch` (a
    non-chief worker's `ModelDir.scratch`), only trains: it reads the
    chief's checkpoints and writes its own to `scratch`. `hold` (the
    chief's `TrialHold` on the trial) is checked before anything lasting
    is written."""
    config = inputs.config
    check_hold = hold.check if hold else (lambda: None)
    seed = trial_seed(config, trial)
    keras.utils.set_random_seed(seed)
    # Every variable, the encoder's too, must be made under the strategy's
    # scope to be mirrored (and to get its optimizer slots beside it).
    with strategy.scope():
        # Seeded by the trial's set_random_seed above, nothing between.
        # Its position limit was checked as the inputs were read (a debug
        # encoder's is at least max_seq_length).
        encoder = build_encoder(config, vocabulary=inputs.vocabulary)
    if scratch is None:
        folder.write_vocabulary(encoder.tokenizer.get_vocabulary())
    batching = Batching.of(config, runtime, strategy)
    replicas = strategy.num_replicas_in_sync
    micro = runtime.micro_batches(config, replicas)
    train_ds, probabilities = pipeline.train_dataset(
        inputs.tasks, inputs.train_features, config.train_batch_size, seed,
        config.task_weight_exponent, inputs.teachers,
        **batching.train_args(inputs.train_features, config.train_batch_size,
                              config.task_weight_exponent,
                              runtime.groups(config, replicas)))
    epoch_steps = steps_per_epoch([len(f) for f in inputs.train_features],
                                  config.train_batch_size)
    total_steps = max(1, int(config.num_train_epochs * epoch_steps))
    logging.info("trial %d: seed %d, %d steps (%d per epoch), sampling %s%s",
                 trial, seed, total_steps, epoch_steps,
                 {t: round(float(p), 4)
                  for t, p in zip(config.task_names, probabilities)},
                 f", micro-batches of {micro} per replica" if micro else "")
    source = inputs.init_source
    with strategy.scope():
        batch = next(iter(train_ds))
        model = build_model(encoder.backbone,
                            [t.head_spec for t in inputs.tasks], batch,
                            config.dropout_rate, config.mixed_precision)
        if source:
            start_from_weights(model, source.weights_path,
                               source.head_specs(), batch)
        compile_for_training(model, config, total_steps, micro,
                             runtime.steps_per_execution,
                             runtime.jit_compile)
    dev = inputs.dev_splits()
    predict = lambda splits: predict_splits(
        model, inputs, splits, batching, config.eval_batch_size)
    written = scratch or folder
    trainer = TrialTrainer(
        model, train_ds, written.checkpoints_dir(trial),
        written.logs_dir(trial), epoch_steps, total_steps, runtime, trial,
        config.task_names,
        evaluate=(lambda: evaluate(model, inputs, predict(dev)))
        if config.eval_each_epoch and scratch is None else None,
        before_save=check_hold,
        callbacks=[_StopIfClaimLost(hold)] if hold else [],
        verbose=verbose)
    trainer.resume(folder.checkpoints_dir(trial))
    train_loss = trainer.fit()
    if scratch:
        return None
    check_hold()
    save_weights(model, folder.weights_path(trial))
    splits = output_splits(inputs, trial, config.n_writes_distill,
                           config.n_writes_test)
    predictions = predict(dev + [s for s in splits if s not in dev])
    scores, avg = evaluate(model, inputs, predictions)
    check_hold()
    write_outputs(inputs, folder, trial, predictions, splits)
    write_trial_hparams(folder.logs_dir(trial), config, trial, seed, scores,
                        avg, total_steps)
    logging.info("trial %d: avg %.2f %s", trial, avg, scores)
    return {"trial": trial, "seed": seed, "metrics": scores, "avg": avg,
            "steps": total_steps, "train_loss": train_loss}


class _StopIfClaimLost(keras.callbacks.Callback):
    """Stops training as soon as the heartbeat finds the trial taken over
    (this process was paused past the claim timeout): two processes must
    never write one trial's checkpoints."""

    def __init__(self, hold):
        super().__init__()
        self.hold = hold

    def on_train_batch_end(self, batch, logs=None):
        if self.hold.lost:
            self.hold.check()
