"""absl flags: one per `RunConfig` field (names follow the original BAM's
config fields), plus run-time choices. Every flag is optional; a flag the
user did not set leaves the configuration's default, or the named preset's
value, in place."""

import dataclasses
import importlib.util
import os
import typing

from absl import flags

from bam_tf.config import PRESETS
from bam_tf.config import RunConfig
from bam_tf.distribute import STRATEGIES

_HELP = {
    "model_name": "Folder under BAM_DIR/models for this run's outputs.",
    "bam_dir": "Root folder (glue_data/, pretrained_models/, models/).",
    "task_names": "Comma-separated tasks, e.g. rte,mrpc,sts.",
    "dropout_rate": "Dropout before each head (and inside the debug "
                    "encoder; a pretrained one keeps its own).",
    "glue_dir": "GLUE folder; default BAM_DIR/glue_data.",
    "data_source": "tsv (GLUE files) or tfds (TensorFlow Datasets glue/*).",
    "pretrained_model": "keras-hub preset, local folder (keras-hub, Hugging "
                        "Face or TF1 BERT checkpoint) or a name under "
                        "BAM_DIR/pretrained_models.",
    "debug": "Tiny random encoder (the original's debug mode).",
    "teachers": "task:teacher_model,... (with --distill).",
    "teacher_trials": "Teacher trial(s) whose targets to use; several give "
                      "an ensemble (mean).",
    "distill_weight": "Teacher weight (1 - lambda) without annealing.",
    "lr_decay": "Layer-wise learning-rate decay alpha.",
    "task_weight_exponent": "Sample tasks in proportion to |D|^exponent.",
    "task_loss_weights": "task:weight,... multiplies each example's loss "
                         "by its task's weight (default 1; multi-task runs; "
                         "not in the original).",
    "max_train_examples": "Train on the first N examples of each task.",
    "padding": "buckets (similar lengths batched, padded to 16, 32, ...; "
               "CPU/GPU), longest (each batch to its longest), max_length "
               "(static shapes, TPU).",
    "mixed_precision": "mixed_float16 (loss scaling) or mixed_bfloat16.",
}


def _flag_type(field):
    kind = field.type
    if typing.get_origin(kind) is typing.Union:  # Optional[X]
        kind = [a for a in typing.get_args(kind) if a is not type(None)][0]
    return kind


def define_flags():
    for field in dataclasses.fields(RunConfig):
        kind = _flag_type(field)
        help_text = _HELP.get(field.name, field.name.replace("_", " ") + ".")
        if kind is bool:
            flags.DEFINE_boolean(field.name, None, help_text)
        elif kind is int:
            flags.DEFINE_integer(field.name, None, help_text)
        elif kind is float:
            flags.DEFINE_float(field.name, None, help_text)
        else:  # str and the comma-separated tuple fields
            flags.DEFINE_string(field.name, None, help_text)
    flags.DEFINE_enum("preset", None, sorted(PRESETS),
                      "Named hyperparameter preset, applied under any flag "
                      "given explicitly.")
    flags.DEFINE_boolean("overwrite", False,
                         "Delete the model folder and start afresh.")
    flags.DEFINE_enum("strategy", "default", STRATEGIES,
                      "Hardware: one device, local GPUs, multi-worker "
                      "(TF_CONFIG) or TPU.")
    flags.DEFINE_string("tpu", None, "TPU name or address (--strategy=tpu).")
    flags.DEFINE_integer("save_checkpoints_steps", None,
                         "Checkpoint every N steps (default: by time).")
    flags.DEFINE_float("save_checkpoints_secs", 300.0,
                       "Checkpoint every so many seconds of training.")
    flags.DEFINE_boolean("jit_compile", False,
                         "XLA-compile the training step (one program per "
                         "shape: use with --padding=buckets or "
                         "max_length).")
    flags.DEFINE_integer("micro_batch_size", None,
                         "Gradient accumulation, for memory: each replica "
                         "runs its share of a training batch through the "
                         "network this many examples at a time and makes "
                         "one update from the summed gradients (the same "
                         "batches, steps and schedule as without it). Must "
                         "divide train_batch_size / replicas.")
    define_task_modules_flag()


def runtime(flag_values=None):
    """How to carry the run out: not part of the saved configuration."""
    from bam_tf.run import Runtime
    flag_values = flag_values or flags.FLAGS
    return Runtime(
        save_checkpoints_steps=flag_values.save_checkpoints_steps,
        save_checkpoints_secs=flag_values.save_checkpoints_secs,
        jit_compile=flag_values.jit_compile,
        micro_batch_size=flag_values.micro_batch_size)


def define_task_modules_flag():
    flags.DEFINE_list("task_modules", [],
                      "Python files that define and register your own tasks "
                      "(README, 'Your own task').")


def import_task_modules(paths):
    """Runs each file once, so that its register_task calls take effect."""
    for path in paths:
        if not os.path.isfile(path):
            raise flags.ValidationError(f"--task_modules: no file {path}")
        name = "bam_user_tasks_" + os.path.splitext(
            os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


def config_values(flag_values=None, presets=()):
    """The configuration dict from the named presets, then the flags the
    user set (a flagfile counts as set)."""
    flag_values = flag_values or flags.FLAGS
    values = {}
    names = list(presets)
    if flag_values["preset"].value:
        names.append(flag_values["preset"].value)
    for name in names:
        values.update(PRESETS[name])
    for field in dataclasses.fields(RunConfig):
        flag = flag_values[field.name]
        if flag.present or flag.value is not None:
            values[field.name] = flag.value
    return values
