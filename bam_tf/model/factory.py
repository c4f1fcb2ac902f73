"""The one way a `BamModel` is made: built on a batch (its variables
exist), and for training compiled with the run's optimizer and schedule
(its optimizer built, so a checkpoint can restore the slots). Training,
export, Table 3's start and the benchmark all build through here."""

import tensorflow as tf

from bam_tf.model.bam_model import BamModel
from bam_tf.model.optimization import build_optimizer
from bam_tf.model.schedule import TrainSchedule


def build_model(backbone, head_specs, batch=None, dropout_rate=0.1,
                dtype=None):
    """A `BamModel` of `backbone` and `head_specs`, built on `batch` (any
    input batch; default a one-example padded batch).

    Example:

    ```python
    model = build_model(encoder.backbone, [t.head_spec for t in tasks])
    model({"token_ids": ids, "segment_ids": ids * 0, "padding_mask": ids})
    ```
    """
    model = BamModel(backbone, head_specs, dropout_rate=dropout_rate,
                     dtype=dtype)
    if batch is None:
        dummy = tf.ones([1, 4], tf.int32)
        batch = {"token_ids": dummy, "segment_ids": dummy * 0,
                 "padding_mask": dummy}
    model(batch)
    return model


def schedule_of(config, total_steps, micro_batch_size=None):
    """The `TrainSchedule` of a `RunConfig`: how gold labels and teacher
    targets mix (paper section 3), and the loss's scaling."""
    return TrainSchedule(
        total_steps=total_steps, distill=config.distill,
        teacher_annealing=config.teacher_annealing,
        distill_weight=config.distill_weight,
        distill_temperature=config.distill_temperature,
        global_batch_size=config.train_batch_size,
        loss_weights=[config.loss_weight(t) for t in config.task_names],
        micro_batch_size=micro_batch_size)


def compile_for_training(model, config, total_steps, micro_batch_size=None,
                         steps_per_execution=1, jit_compile=False):
    """Compiles `model` (built) with the optimizer (layer-wise rates) and
    schedule of `config` for `total_steps`, and builds the optimizer.
    Call under the strategy's scope. Returns the model.

    Every padding compiles the optimizer update (`LayerwiseAdamW`'s
    `jit_update`): its embedding gradients are padded to a few sizes."""
    model.compile(
        optimizer=build_optimizer(
            model, model.backbone, config.learning_rate, total_steps,
            config.warmup_proportion, config.weight_decay_rate,
            config.lr_decay, config.clip_norm),
        schedule=schedule_of(config, total_steps, micro_batch_size),
        steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    model.optimizer.build(model.trainable_variables)
    return model
