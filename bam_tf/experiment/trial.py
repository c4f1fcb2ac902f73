"""One trial of a run: its seed, encoder, model and data stream; training;
then its weights, predictions, scores and output files."""

import keras
from absl import logging

from bam_tf.data import pipeline
from bam_tf.data.batching import Batching
from bam_tf.data.sampling import steps_per_epoch
from bam_tf.encoders.builder import build_encoder
from bam_tf.experiment.evaluation import Evaluator
from bam_tf.experiment.hparams import write_trial_hparams
from bam_tf.model.factory import model_for_training
from bam_tf.model.factory import save_weights
from bam_tf.training.trainer import TrialTrainer


def trial_seed(config, trial):
    return config.seed + trial - 1


def run_trial(inputs, hold, strategy, runtime, verbose):
    """Trains and scores trial `hold.trial` of `inputs` (a `RunInputs`) in
    `hold.folder` (a `ModelDir`); returns its record for results.json.
    `hold`: the chief's `TrialHold`, checked before anything lasting is
    written; or a non-chief worker's `FollowedTrial`, which only trains,
    reading the chief's checkpoints and writing its own to its scratch
    folder (returns None)."""
    config = inputs.config
    folder, trial, scratch = hold.folder, hold.trial, hold.scratch
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
    epoch_steps = steps_per_epoch([len(f) for f in inputs.train_features],
                                  config.train_batch_size)
    train_ds, probabilities = pipeline.train_dataset(
        inputs.tasks, inputs.train_features, config.train_batch_size, seed,
        config.task_weight_exponent, inputs.teachers, batching,
        runtime.groups(config, replicas))
    total_steps = max(1, int(config.num_train_epochs * epoch_steps))
    logging.info("trial %d: seed %d, %d steps (%d per epoch), sampling %s%s",
                 trial, seed, total_steps, epoch_steps,
                 {t: round(float(p), 4)
                  for t, p in zip(config.task_names, probabilities)},
                 f", micro-batches of {micro} per replica" if micro else "")
    source = inputs.init_source
    with strategy.scope():
        model = model_for_training(
            encoder.backbone, [t.head_spec for t in inputs.tasks],
            next(iter(train_ds)), config, total_steps, micro,
            runtime.steps_per_execution, runtime.jit_compile,
            init_weights=source and source.weights_path,
            init_head_specs=source and source.head_specs())
    evaluator = Evaluator(model, inputs, batching, config.eval_batch_size)
    written = hold.written
    trainer = TrialTrainer(
        model, train_ds, written.checkpoints_dir(trial),
        written.logs_dir(trial), epoch_steps, total_steps, runtime, trial,
        config.task_names,
        evaluate=evaluator.dev_scores
        if config.eval_each_epoch and scratch is None else None,
        hold=hold, verbose=verbose)
    trainer.resume(folder.checkpoints_dir(trial))
    train_loss = trainer.fit()
    if scratch:
        return None
    hold.check()
    save_weights(model, folder.weights_path(trial))
    scores, avg = evaluator.finish(folder, trial, config.n_writes_distill,
                                   config.n_writes_test,
                                   before_write=hold.check)
    write_trial_hparams(folder.logs_dir(trial), config, trial, seed, scores,
                        avg, total_steps)
    logging.info("trial %d: avg %.2f %s", trial, avg, scores)
    return {"trial": trial, "seed": seed, "metrics": scores, "avg": avg,
            "steps": total_steps, "train_loss": train_loss}
