"""absl flags: one per `RunConfig` field (names follow the original BAM's
config fields), plus the `Runtime`'s (how the run is carried out). Every
flag is optional; a flag the user did not set leaves the configuration's
default, or the named preset's value, in place."""

import dataclasses
import importlib.util
import os
import shlex
import typing

from absl import flags

from bam_tf.config import PRESETS
from bam_tf.config import STRATEGIES
from bam_tf.config import RunConfig
from bam_tf.config import Runtime
from bam_tf.config import parse_trials

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
    flags.DEFINE_integer("steps_per_execution", 1,
                         "Training steps per call into the device (the "
                         "original's iterations_per_loop).")
    flags.DEFINE_string("trials", None,
                        "Run only these trial numbers, e.g. 3, 4,5 or 1-10 "
                        "(default: every unfinished trial of "
                        "1..num_trials that no live process holds). Copies "
                        "of one command on many GPUs or machines share the "
                        "trials out either way.")
    flags.DEFINE_float("claim_timeout_secs", 600.0,
                       "A trial claimed by a process on another host whose "
                       "heartbeat is older than this is taken over (on the "
                       "same host: as soon as that process is gone).")
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
    flag_values = flag_values or flags.FLAGS
    return Runtime(
        strategy=flag_values.strategy, tpu=flag_values.tpu,
        save_checkpoints_steps=flag_values.save_checkpoints_steps,
        save_checkpoints_secs=flag_values.save_checkpoints_secs,
        jit_compile=flag_values.jit_compile,
        micro_batch_size=flag_values.micro_batch_size,
        steps_per_execution=flag_values.steps_per_execution,
        trials=(parse_trials(flag_values.trials)
                if flag_values.trials else None),
        claim_timeout_secs=flag_values.claim_timeout_secs)


# Runtime fields that a printed command carries over (the trials are set
# per line).
_RUNTIME_FLAGS = ("strategy", "tpu", "save_checkpoints_steps",
                  "save_checkpoints_secs", "jit_compile", "micro_batch_size",
                  "steps_per_execution", "claim_timeout_secs")


def _flag_text(name, value):
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, dict):
        value = ",".join(f"{k}:{v}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return f"--{name}={value}"


def command_line(config, run_time=None, trial=None,
                 script="scripts/run_classifier.py", task_modules=()):
    """The run_classifier.py command that runs `config` (and `trial`
    alone): every field that differs from its default, so no preset or
    flagfile is needed to read it."""
    run_time = run_time or Runtime()
    words = ["python", script]
    defaults = RunConfig.__dataclass_fields__
    for name, value in config.to_dict().items():
        default = defaults[name].default
        if isinstance(default, tuple):
            default = list(default)
        if name in ("model_name", "bam_dir", "task_names") or (
                value is not None and value != default
                and value not in ({}, [])):
            words.append(_flag_text(name, value))
    for name in _RUNTIME_FLAGS:
        value = getattr(run_time, name)
        if value is not None and value != Runtime.__dataclass_fields__[
                name].default:
            words.append(_flag_text(name, value))
    if task_modules:
        words.append(_flag_text("task_modules", list(task_modules)))
    if trial is not None:
        words.append(f"--trials={trial}")
    return " ".join(shlex.quote(w) for w in words)


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
