"""absl flags: one per `RunConfig` setting (names follow the original
BAM's config fields) and one per `Runtime` setting (how the run is carried
out), each made from the setting's declaration (`bam_tf.settings`: its
type, help and default). Every flag is optional; a flag the user did not
set leaves the declared default, or the named preset's value, in place."""

import dataclasses
import importlib.util
import os
import shlex
import traceback
import typing

from absl import app
from absl import flags

from bam_tf.config import PRESETS
from bam_tf.config import RunConfig
from bam_tf.runtime import Runtime
from bam_tf_flags.parsers import define_task_map
from bam_tf_flags.parsers import define_trials


def _help(field):
    """The setting's help, the default in force, and what presets set."""
    text = field.metadata["help"]
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


# The forms of a task -> value setting (`bam_tf.settings.FORMS`): how a
# value is read, and its form in errors.
_TASK_MAPS = {"task_names": (str, "task:model"),
              "task_numbers": (float, "task:number")}


def _define(field, flag_values):
    """The flag of one declared setting (`bam_tf.settings.setting`)."""
    kind, help_text = _flag_type(field), _help(field)
    fv = {"flag_values": flag_values}
    if field.metadata["choices"]:
        flags.DEFINE_enum(field.name, None, field.metadata["choices"],
                          help_text, **fv)
    elif kind is bool:
        flags.DEFINE_boolean(field.name, None, help_text, **fv)
    elif kind is int:
        flags.DEFINE_integer(field.name, None, help_text, **fv)
    elif kind is float:
        flags.DEFINE_float(field.name, None, help_text, **fv)
    elif field.metadata["form"] == "names":
        flags.DEFINE_list(field.name, None, help_text, **fv)
    elif field.metadata["form"] == "trials":
        define_trials(field.name, help_text, flag_values, __name__)
    elif field.metadata["form"] in _TASK_MAPS:
        define_task_map(field.name, *_TASK_MAPS[field.metadata["form"]],
                        help_text, flag_values, __name__)
    else:
        flags.DEFINE_string(field.name, None, help_text, **fv)


def define_flags(flag_values=flags.FLAGS):
    fv = {"flag_values": flag_values}
    for field in dataclasses.fields(RunConfig) + dataclasses.fields(Runtime):
        _define(field, flag_values)
    flags.DEFINE_multi_enum(
        "preset", [], sorted(PRESETS),
        "Named hyperparameter preset(s), applied in order, each under every "
        "flag given explicitly, whatever the order on the command line "
        "(flags/*.cfg hold nothing but a --preset): "
        + "; ".join(f"{name}: " + ", ".join(
            f"{k}={v}" for k, v in PRESETS[name].items())
            for name in sorted(PRESETS)) + ".", **fv)
    flags.DEFINE_boolean(
        "overwrite", False,
        "Delete the model folder and start afresh (born_again.py: every "
        "folder of the recipe, before its first step).", **fv)
    # --trials alone may grow a folder (--trials=4 adds trial 4); beside
    # an explicit --num_trials it must stay within it.
    flags.register_multi_flags_validator(
        ["num_trials", "trials"],
        lambda v: v["num_trials"] is None or not v["trials"]
        or max(v["trials"]) <= v["num_trials"],
        message="--trials goes past --num_trials: raise --num_trials to "
        "the largest trial asked for, or drop it (--trials alone grows "
        "the folder to its largest trial).", flag_values=flag_values)
    define_task_modules_flag(flag_values)


def runtime(flag_values=None):
    """How to carry the run out (not part of the saved configuration):
    the runtime flags the user set, the declared defaults for the rest."""
    flag_values = flag_values or flags.FLAGS
    return Runtime(**{field.name: flag_values[field.name].value
                      for field in dataclasses.fields(Runtime)
                      if flag_values[field.name].value is not None})


# Runtime settings that a printed command carries over (the trials are
# set per line).
_RUNTIME_FLAGS = tuple(f.name for f in dataclasses.fields(Runtime)
                       if f.name != "trials")


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
        if default is dataclasses.MISSING or (
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
    """Runs each file once, so that its register_task calls take effect.
    An error in a file (a typo, a `Task` that does not validate) is a
    usage error naming the file and its line."""
    for path in paths:
        if not os.path.isfile(path):
            raise flags.ValidationError(f"--task_modules: no file {path}")
        name = "bam_user_tasks_" + os.path.splitext(
            os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 (sorted below)
            where = _where_it_failed(path, e)
            if where is None:
                raise  # not the file's fault: bam-tf's, or the install's
            text = e.msg if isinstance(e, SyntaxError) else str(e)
            raise app.UsageError(
                f"--task_modules: {where}: {type(e).__name__}: "
                f"{(text.strip().splitlines() or [''])[0]}") from None


def _where_it_failed(path, error):
    """"file, line N" of the user's code where `error` arose: a syntax
    error's own place; for a ValueError (a `Task` that does not
    validate), the last line of `path` it went through; for any other
    error, only if it was raised in `path` itself. None otherwise."""
    if isinstance(error, SyntaxError):
        return f"{error.filename or path}, line {error.lineno}"
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames
            if os.path.abspath(f.filename) == os.path.abspath(path)]
    if not mine or not (isinstance(error, ValueError)
                        or frames[-1] is mine[-1]):
        return None
    return f"{path}, line {mine[-1].lineno}"


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
