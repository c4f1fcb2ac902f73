"""One trial of a run: its seed, encoder, model and data stream; training;
then its weights, predictions, scores and output files."""

import os

import keras
import tensorflow as tf
from absl import logging

from bam_tf.data import pipeline
from bam_tf.data.batching import Batching
from bam_tf.data.sampling import steps_per_epoch
from bam_tf.encoders.builder import build_encoder
from bam_tf.experiment.evaluation import evaluate
from bam_tf.experiment.evaluation import predict_splits
from bam_tf.experiment.evaluation import write_outputs
from bam_tf.experiment.guard import check_position_limit
from bam_tf.experiment.hparams import write_trial_hparams
from bam_tf.experiment.init_source import InitSource
from bam_tf.io_utils import atomic_write_text
from bam_tf.model.bam_model import BamModel
from bam_tf.model.optimization import build_optimizer
from bam_tf.model.schedule import TrainSchedule
from bam_tf.training.checkpoints import save_weights
from bam_tf.training.initialization import start_from_weights
from bam_tf.training.trainer import TrialTrainer


def trial_seed(config, trial):
    return config.seed + trial - 1


def run_trial(config, data, folder, trial, strategy, runtime, verbose,
              scratch=None, claim=None):
    """Trains and scores one trial of `data` (a `RunData`) in `folder` (a
    `ModelDir`); returns its record for results.json. With `scratch` (a
    non-chief worker), only trains: it reads the chief's checkpoints and
    writes its own to `scratch`. `claim` (the chief's hold on the trial)
    is checked before anything lasting is written."""
    check_claim = claim.check if claim else (lambda: None)
    source = InitSource(config) if config.init_from_model else None
    seed = trial_seed(config, trial)
    keras.utils.set_random_seed(seed)
    # Every variable, the encoder's too, must be made under the strategy's
    # scope to be mirrored (and to get its optimizer slots beside it).
    with strategy.scope():
        # Seeded by the trial's set_random_seed above, nothing between.
        encoder = build_encoder(config, data.vocabulary_texts(), (
            source.vocabulary() if source and config.debug else None))
    check_position_limit(config, encoder)
    if data.train_features is None:
        data.featurize(encoder.tokenizer)
    if scratch is None:
        atomic_write_text(folder.vocab_path, "\n".join(
            encoder.tokenizer.get_vocabulary()) + "\n")
    batching = Batching.of(config, runtime)
    replicas = strategy.num_replicas_in_sync
    micro = runtime.micro_batches(config, replicas)
    # Packed batches: one group of rows per replica and micro-batch.
    groups = replicas * (config.train_batch_size // replicas // micro
                         if micro else 1)
    train_ds, probabilities = pipeline.train_dataset(
        data.tasks, data.train_features, config.train_batch_size, seed,
        config.task_weight_exponent, data.teachers,
        **batching.train_args(data.train_features, config.train_batch_size,
                              config.task_weight_exponent, groups))
    epoch_steps = steps_per_epoch([len(f) for f in data.train_features],
                                  config.train_batch_size)
    total_steps = max(1, int(config.num_train_epochs * epoch_steps))
    logging.info("trial %d: seed %d, %d steps (%d per epoch), sampling %s%s",
                 trial, seed, total_steps, epoch_steps,
                 {t: round(float(p), 4)
                  for t, p in zip(config.task_names, probabilities)},
                 f", micro-batches of {micro} per replica" if micro else "")
    with strategy.scope():
        model = _compiled_model(config, data, encoder, runtime, total_steps,
                                next(iter(train_ds)), source)
    trainer = TrialTrainer(
        model, train_ds,
        os.path.join(scratch, f"trial_{trial}") if scratch
        else folder.checkpoints_dir(trial),
        os.path.join(scratch, "logs", f"trial_{trial}") if scratch
        else folder.logs_dir(trial),
        epoch_steps, total_steps, runtime, trial, config.task_names,
        evaluate=(lambda: evaluate(model, data, batching=batching))
        if config.eval_each_epoch and scratch is None else None,
        before_save=check_claim,
        callbacks=[_StopIfClaimLost(claim)] if claim else [],
        verbose=verbose)
    trainer.resume(folder.checkpoints_dir(trial))
    train_loss = trainer.fit()
    if scratch:
        return None
    check_claim()
    save_weights(model, folder.weights_path(trial))
    splits = data.output_splits(trial)
    dev = data.dev_splits()
    predictions = predict_splits(model, data,
                                 dev + [s for s in splits if s not in dev],
                                 batching)
    scores, avg = evaluate(model, data, predictions)
    check_claim()
    write_outputs(data, folder, trial, predictions, splits)
    write_trial_hparams(folder.logs_dir(trial), config, trial, seed, scores,
                        avg, total_steps)
    logging.info("trial %d: avg %.2f %s", trial, avg, scores)
    return {"trial": trial, "seed": seed, "metrics": scores, "avg": avg,
            "steps": total_steps, "train_loss": train_loss}


def _compiled_model(config, data, encoder, runtime, total_steps, batch,
                    source=None):
    """The trial's model, built on `batch`, started from `source` (an
    `InitSource`, for --init_from_model), compiled with its schedule and its
    optimizer built (so that a checkpoint can restore the slots). Call
    under the strategy's scope."""
    model = BamModel(encoder.backbone, [t.head_spec for t in data.tasks],
                     dropout_rate=config.dropout_rate,
                     dtype=config.mixed_precision)
    model(batch)
    if source:
        start_from_weights(model, source.weights_path, source.head_specs(),
                           batch)
    model.compile(
        optimizer=build_optimizer(
            model, encoder.backbone, config.learning_rate, total_steps,
            config.warmup_proportion, config.weight_decay_rate,
            config.lr_decay, config.clip_norm),
        schedule=TrainSchedule(
            total_steps=total_steps, distill=config.distill,
            teacher_annealing=config.teacher_annealing,
            distill_weight=config.distill_weight,
            distill_temperature=config.distill_temperature,
            global_batch_size=config.train_batch_size,
            loss_weights=[config.loss_weight(t.name) for t in data.tasks],
            micro_batch_size=runtime.micro_batches(
                config, tf.distribute.get_strategy().num_replicas_in_sync)),
        steps_per_execution=runtime.steps_per_execution,
        jit_compile=runtime.jit_compile)
    model.optimizer.build(model.trainable_variables)
    return model


class _StopIfClaimLost(keras.callbacks.Callback):
    """Stops training as soon as the heartbeat finds the trial taken over
    (this process was paused past the claim timeout): two processes must
    never write one trial's checkpoints."""

    def __init__(self, claim):
        super().__init__()
        self.claim = claim

    def on_train_batch_end(self, batch, logs=None):
        if self.claim.lost:
            self.claim.check()
