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
from bam_tf_flags.parsers import define_task_map
from bam_tf_flags.parsers import define_trials

# One line of help per configuration field; the default in force (and
# what each preset sets) is added by `_help`.
_HELP = {
    "model_name": "Folder under BAM_DIR/models for this run's outputs "
                  "(born_again.py: the prefix of every model's name).",
    "bam_dir": "Root folder (glue_data/, pretrained_models/, models/).",
    "task_names": "Comma-separated tasks, e.g. rte,mrpc,sts (GLUE: cola, "
                  "sst, mrpc, sts, qqp, mnli, qnli, rte, wnli; or your own, "
                  "--task_modules).",
    "glue_dir": "GLUE folder (default BAM_DIR/glue_data).",
    "data_source": "tsv (GLUE files) or tfds (TensorFlow Datasets glue/*).",
    "pretrained_model": "keras-hub preset, local folder (keras-hub, Hugging "
                        "Face or TF1 BERT checkpoint) or a name under "
                        "BAM_DIR/pretrained_models.",
    "debug": "Tiny random encoder instead of --pretrained_model (the "
             "original's debug mode).",
    "debug_hidden_size": "Hidden size of the --debug encoder.",
    "debug_num_layers": "Transformer layers of the --debug encoder.",
    "debug_vocab_size": "WordPiece vocabulary size of the --debug encoder "
                        "(learned from the training data).",
    "max_seq_length": "Tokens per example after packing; longer pairs are "
                      "truncated longest-first, as BERT does.",
    "padding": "packed (each batch's examples laid end to end in rows, no "
               "padding computed; static shapes on TPU and with "
               "--jit_compile), longest (each batch to its longest), "
               "max_length (every batch to --max_seq_length), buckets "
               "(the stream regrouped by length: other batches).",
    "mixed_precision": "mixed_float16 (loss scaling) or mixed_bfloat16; "
                       "unset: float32.",
    "train_batch_size": "Training batch over all devices (paper: 32 single-"
                        "task, 128 multi-task).",
    "eval_batch_size": "Batch size for dev/test/train predictions (changes "
                       "no score).",
    "learning_rate": "Peak learning rate of the top layer (paper: 5e-5 "
                     "single-task, 1e-4 multi-task, 1e-5 Table 3).",
    "lr_decay": "Layer-wise learning-rate decay alpha: a layer at depth d "
                "gets learning_rate * alpha^d.",
    "num_train_epochs": "Training epochs (fractions allowed); one epoch is "
                        "the sum of the tasks' training sizes.",
    "warmup_proportion": "Share of steps of linear warm-up before linear "
                         "decay to 0.",
    "weight_decay_rate": "Decoupled weight decay (not on LayerNorm and "
                         "biases).",
    "clip_norm": "Gradients clipped to this global norm.",
    "dropout_rate": "Dropout before each head (and inside the debug "
                    "encoder; a pretrained one keeps its own).",
    "task_weight_exponent": "Sample tasks in proportion to |D|^exponent "
                            "(1.0 proportional, 0.0 uniform).",
    "task_loss_weights": "task:weight,... multiplies each example's loss "
                         "by its task's weight (default 1; multi-task runs; "
                         "not in the original).",
    "double_unordered": "Train on both orders of unordered pairs (MRPC, "
                        "STS-B), as the original does.",
    "max_train_examples": "Train on the first N examples of each task "
                          "(quick runs).",
    "distill": "Learn from the teachers' targets (--teachers).",
    "teachers": "task:teacher_model,... (with --distill).",
    "teacher_trials": "Teacher trial(s) whose targets to use; several give "
                      "an ensemble (mean).",
    "teacher_annealing": "lambda rises from 0 to 1 over training (target = "
                         "lambda * gold + (1 - lambda) * teacher); off: "
                         "lambda fixed at 1 - --distill_weight.",
    "distill_weight": "Teacher weight (1 - lambda) without annealing.",
    "distill_temperature": "Knowledge-distillation temperature (the paper: "
                           "1).",
    "init_from_model": "Table 3: start from this model folder's trained "
                       "encoder and shared heads.",
    "init_from_trial": "Which trial of --init_from_model to start from.",
    "num_trials": "Trials (seeds) the folder holds; trial i uses seed + i "
                  "- 1.",
    "seed": "Seed of trial 1.",
    "n_writes_distill": "The first N trials write training-set predictions "
                        "(the targets of later students).",
    "n_writes_test": "The first N trials write dev and test predictions and "
                     "GLUE files.",
    "eval_each_epoch": "Dev scores to the log and TensorBoard after every "
                       "epoch.",
    "cache_features": "Reuse tokenized features under BAM_DIR/cache.",
}


def _help(field):
    """The field's help, the default in force, and what presets set."""
    text = _HELP[field.name]
    default = field.default
    if default is dataclasses.MISSING:
        return text + " Required."
    if isinstance(default, tuple):
        default = ",".join(str(x) for x in default) or "none"
    if default is not None:
        text += f" Default: {default}"
    by_preset = [f"{name} {PRESETS[name][field.name]}"
                 for name in sorted(PRESETS) if field.name in PRESETS[name]]
    if by_preset:
        text += f" (--preset: {', '.join(by_preset)})"
    return text if text.endswith(".") else text + "."


def _flag_type(field):
    kind = field.type
    if typing.get_origin(kind) is typing.Union:  # Optional[X]
        kind = [a for a in typing.get_args(kind) if a is not type(None)][0]
    return kind


# The task -> value fields: how a value is read, and its form in errors.
_TASK_MAPS = {"teachers": (str, "task:model"),
              "task_loss_weights": (float, "task:number")}


def define_flags(flag_values=flags.FLAGS):
    fv = {"flag_values": flag_values}
    for field in dataclasses.fields(RunConfig):
        kind = _flag_type(field)
        help_text = _help(field)
        if kind is bool:
            flags.DEFINE_boolean(field.name, None, help_text, **fv)
        elif kind is int:
            flags.DEFINE_integer(field.name, None, help_text, **fv)
        elif kind is float:
            flags.DEFINE_float(field.name, None, help_text, **fv)
        elif field.name == "task_names":
            flags.DEFINE_list(field.name, None, help_text, **fv)
        elif field.name == "teacher_trials":
            define_trials(field.name, help_text, flag_values, __name__)
        elif field.name in _TASK_MAPS:
            define_task_map(field.name, *_TASK_MAPS[field.name], help_text,
                            flag_values, __name__)
        else:
            flags.DEFINE_string(field.name, None, help_text, **fv)
    flags.DEFINE_multi_enum(
        "preset", [], sorted(PRESETS),
        "Named hyperparameter preset(s), applied in order, each under every "
        "flag given explicitly, whatever the order on the command line "
        "(flags/*.cfg hold nothing but a --preset): "
        + "; ".join(f"{name}: " + ", ".join(
            f"{k}={v}" for k, v in PRESETS[name].items())
            for name in sorted(PRESETS)) + ".", **fv)
    flags.DEFINE_boolean("overwrite", False,
                         "Delete the model folder and start afresh.", **fv)
    flags.DEFINE_enum("strategy", "default", STRATEGIES,
                      "Hardware: one device, local GPUs, multi-worker "
                      "(TF_CONFIG) or TPU.", **fv)
    flags.DEFINE_string("tpu", None, "TPU name or address (--strategy=tpu).", **fv)
    flags.DEFINE_integer("save_checkpoints_steps", None,
                         "Checkpoint every N steps (default: by time).", **fv)
    flags.DEFINE_float("save_checkpoints_secs", 300.0,
                       "Checkpoint every so many seconds of training.", **fv)
    flags.DEFINE_boolean("jit_compile", False,
                         "XLA-compile the training step (one program per "
                         "shape: use with --padding=packed, buckets or "
                         "max_length).", **fv)
    flags.DEFINE_integer("steps_per_execution", 1,
                         "Training steps per call into the device (the "
                         "original's iterations_per_loop).", **fv)
    define_trials("trials",
                  "Run only these trial numbers, e.g. 3, 4,5 or 1-10 "
                  "(default: every unfinished trial of 1..num_trials that "
                  "no live process holds). Copies of one command on many "
                  "GPUs or machines share the trials out either way.",
                  flag_values, __name__)
    # --trials alone may grow a folder (--trials=4 adds trial 4); beside
    # an explicit --num_trials it must stay within it.
    flags.register_multi_flags_validator(
        ["num_trials", "trials"],
        lambda v: v["num_trials"] is None or not v["trials"]
        or max(v["trials"]) <= v["num_trials"],
        message="--trials goes past --num_trials: raise --num_trials to "
        "the largest trial asked for, or drop it (--trials alone grows "
        "the folder to its largest trial).", flag_values=flag_values)
    flags.DEFINE_float("claim_timeout_secs", 600.0,
                       "A trial claimed by a process on another host whose "
                       "heartbeat is older than this is taken over (on the "
                       "same host: as soon as that process is gone).", **fv)
    flags.DEFINE_integer("micro_batch_size", None,
                         "Gradient accumulation, for memory: each replica "
                         "runs its share of a training batch through the "
                         "network this many examples at a time and makes "
                         "one update from the summed gradients (the same "
                         "batches, steps and schedule as without it). Must "
                         "divide train_batch_size / replicas, or be at least "
                         "it (the whole batch at once).", **fv)
    define_task_modules_flag(flag_values)


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
        trials=flag_values.trials,
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


def define_task_modules_flag(flag_values=flags.FLAGS):
    flags.DEFINE_list("task_modules", [],
                      "Python files that define and register your own tasks "
                      "(README, 'Your own task').", flag_values=flag_values)

    # Checked while the flags are parsed, so that a missing file is a
    # usage error naming it, not a traceback from main.
    def files_exist(paths):
        missing = [p for p in paths or [] if not os.path.isfile(p)]
        if missing:
            raise flags.ValidationError(
                f"--task_modules: no file {', '.join(missing)} (Python "
                "files that register tasks are expected)")
        return True
    flags.register_validator("task_modules", files_exist,
                             flag_values=flag_values)


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
    for name in list(presets) + list(flag_values["preset"].value or []):
        values.update(PRESETS[name])
    # A flag the user set (on the line or in a flagfile) always wins over
    # a preset: presets only fill in what was not given.
    for field in dataclasses.fields(RunConfig):
        flag = flag_values[field.name]
        if flag.present or flag.value is not None:
            values[field.name] = flag.value
    return values
