"""The one way a `BamModel` is made: built on a batch (its variables
exist), for training started from a Table 3 source's weights and compiled
with the run's optimizer and schedule (its optimizer built, so a
checkpoint can restore the slots); and its weights file read and written.
Training, export, Table 3's start and the benchmark all build through
here."""

import contextlib
import errno
import os
import shutil

import numpy as np
import tensorflow as tf

from bam_tf.errors import RunError
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


def model_for_training(backbone, head_specs, batch, config, total_steps,
                       micro_batch_size=None, steps_per_execution=1,
                       jit_compile=False, init_weights=None,
                       init_head_specs=None):
    """A trial's model: built on `batch`; for Table 3, its backbone and
    shared heads set to the weights at `init_weights` (saved from a model
    with heads `init_head_specs`); compiled (`compile_for_training`).
    Call under the strategy's scope."""
    model = build_model(backbone, head_specs, batch, config.dropout_rate,
                        config.mixed_precision)
    if init_weights:
        start_from_weights(model, init_weights, init_head_specs, batch)
    return compile_for_training(model, config, total_steps, micro_batch_size,
                                steps_per_execution, jit_compile)


def start_from_weights(model, weights_path, source_specs, batch):
    """Sets `model`'s backbone, and the heads of the tasks it shares with
    the source, to the weights at `weights_path`, saved from a `BamModel`
    of the same backbone with heads `source_specs` (Table 3 of the paper:
    single-task fine-tuning from a multi-task model). `batch` (any input
    batch) builds the source model."""
    backbone = model.backbone
    source = build_model(
        backbone.__class__.from_config(backbone.get_config()), source_specs,
        batch)
    load_weights(source, weights_path)
    backbone.set_weights(source.backbone.get_weights())
    for name in model.heads:
        if name in source.heads:
            model.heads[name].set_weights(source.heads[name].get_weights())


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
    schedule = schedule_of(config, total_steps, micro_batch_size)
    optimizer = build_optimizer(
        model, model.backbone, config.learning_rate, total_steps,
        config.warmup_proportion, config.weight_decay_rate, config.lr_decay,
        config.clip_norm)
    model.compile(optimizer=optimizer, schedule=schedule,
                  steps_per_execution=steps_per_execution,
                  jit_compile=jit_compile)
    model.optimizer.build(model.trainable_variables)
    return model


def load_weights(model, path):
    """`model.load_weights(path)`, a damaged or foreign file named."""
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        raise RunError(
            f"{path}: unreadable or foreign weights file "
            f"({type(e).__name__}: {e}). Retrain that trial: delete the "
            "file and the trial's entry in results.json, then run the same "
            "command again.") from None


def save_weights(model, path):
    """`model.save_weights(path)`, atomically: a reader never sees half a
    file, and a kill leaves the old one. Refused before writing where the
    disk cannot hold the file (h5py ends the process with a segmentation
    fault when a write fails for lack of space), and the temporary file is
    removed on any failure."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    needed = int(_WEIGHTS_MARGIN * sum(
        int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
        for v in model.weights))
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"needs about {needed >> 20} MiB, "
                      f"{free >> 20} MiB free", path)
    tmp = path[:-len(".weights.h5")] + ".tmp.weights.h5"
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# HDF5's own bookkeeping on top of the raw tensor bytes, with room to spare.
_WEIGHTS_MARGIN = 1.2
