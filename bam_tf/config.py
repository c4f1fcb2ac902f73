"""The run configuration: built once, validated, frozen, saved with the run.

The original BAM kept a mutable config object and silently rewrote its
hyperparameters whenever a single task was given. Here the single-task and
multi-task values are named presets (`PRESETS`) that the caller applies
explicitly with `RunConfig.from_dict({**PRESETS[name], ...})` or `--preset`.

A configuration has sections (`SECTIONS`): the experiment, which decides
every number a run computes and so is the run's identity
(`bam_tf.store.identity`); the paths it reads and writes; and what it writes
(outputs). How a run is carried out (devices, checkpoint cadence, which
trials this process takes) is a `bam_tf.runtime.Runtime`, never saved as
part of the run. Each setting is declared once (`bam_tf.settings.setting`).
"""

import dataclasses
import json
import math
import os
import typing
from typing import Optional

from bam_tf.errors import BamError
from bam_tf.io_utils import not_local
from bam_tf.settings import MAP_FORMS
from bam_tf.settings import REQUIRED
from bam_tf.settings import setting

# Paper section 4 ("Training details"): single-task runs use BERT's recipe,
# multi-task runs a larger batch, more epochs, a larger LR and layer-wise decay.
PRESETS = {
    "single_task": {
        "train_batch_size": 32,
        "num_train_epochs": 3.0,
        "learning_rate": 5e-5,
        "lr_decay": 1.0,
    },
    "multi_task": {
        "train_batch_size": 128,
        "num_train_epochs": 6.0,
        "learning_rate": 1e-4,
        "lr_decay": 0.9,
    },
    # Table 3: continue one task from multi-task weights with a small LR.
    "single_task_finetune": {
        "train_batch_size": 32,
        "num_train_epochs": 3.0,
        "learning_rate": 1e-5,
        "lr_decay": 1.0,
    },
    # The original's debug mode: a tiny random encoder, a minute of training.
    "debug": {
        "debug": True,
        "train_batch_size": 16,
        "eval_batch_size": 64,
        "num_train_epochs": 2.0,
        "learning_rate": 1e-3,
        "lr_decay": 1.0,
        "max_seq_length": 64,
        "max_train_examples": 400,
    },
}

DATA_SOURCES = ("tsv", "tfds")
PADDINGS = ("packed", "buckets", "longest", "max_length")
# The layouts with static shapes (on a TPU, or the whole step compiled).
STATIC_PADDINGS = ("packed", "max_length")


class ConfigError(BamError):
    """A configuration that cannot run; raised before any work starts."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What a run computes (`section("experiment")`), where its files are
    (`section("paths")`) and what it writes (`section("outputs")`).

    Hardware choices (strategy, TPU name) are not part of it: the same
    configuration must give the same model on any device (`Runtime`).

    Example:
    >>> config = RunConfig.from_dict(
    ...     {**PRESETS["single_task"], "model_name": "rte-model",
    ...      "bam_dir": "/tmp/bam", "task_names": ["rte"], "debug": True})
    >>> config.train_batch_size
    32
    """

    # === Paths: where the run's files are ===
    model_name: str = setting(
        REQUIRED, "paths", "Folder under BAM_DIR/models for this run's "
        "outputs (born_again.py: the prefix of every model's name).",
        recipe_owned=True)
    bam_dir: str = setting(
        REQUIRED, "paths", "Root folder (glue_data/, pretrained_models/, "
        "models/).")
    task_names: tuple = setting(
        REQUIRED, "experiment", "Comma-separated tasks, e.g. rte,mrpc,sts "
        "(GLUE: cola, sst, mrpc, sts, qqp, mnli, qnli, rte, wnli; or your "
        "own, --task_modules).", recipe_owned=True, form="names")
    glue_dir: Optional[str] = setting(
        None, "paths", "GLUE folder (default BAM_DIR/glue_data).",
        path=True)
    data_source: str = setting(
        "tsv", "experiment", "tsv (GLUE files) or tfds (TensorFlow "
        "Datasets glue/*).", choices=DATA_SOURCES)
    # The encoder's path is where it was found; what it is, is its
    # fingerprint in the run's identity.
    pretrained_model: Optional[str] = setting(
        None, "paths", "keras-hub preset, local folder (keras-hub, Hugging "
        "Face or TF1 BERT checkpoint) or a name under "
        "BAM_DIR/pretrained_models.", path=True)
    # === The experiment: what decides every number ===
    debug: bool = setting(
        False, "experiment", "Tiny random encoder instead of "
        "--pretrained_model (the original's debug mode).", encoder=True,
        recipe_owned=True)
    debug_hidden_size: int = setting(
        64, "experiment", "Hidden size of the --debug encoder.",
        encoder=True, inert_unless="debug")
    debug_num_layers: int = setting(
        2, "experiment", "Transformer layers of the --debug encoder.",
        encoder=True, inert_unless="debug")
    debug_vocab_size: int = setting(
        1000, "experiment", "WordPiece vocabulary size of the --debug "
        "encoder (learned from the training data).", encoder=True,
        inert_unless="debug")
    max_seq_length: int = setting(
        128, "experiment", "Tokens per example after packing; longer pairs "
        "are truncated longest-first, as BERT does.")
    # The batch layout (`bam_tf.data.batching`): "packed", "longest" and
    # "max_length" lay out the mixed stream's own batches; "buckets"
    # regroups the stream by length.
    padding: str = setting(
        "packed", "experiment", "packed (each batch's examples laid end to "
        "end in rows, no padding computed; static shapes on TPU and with "
        "--jit_compile), longest (each batch to its longest), max_length "
        "(every batch to --max_seq_length), buckets (the stream regrouped "
        "by length: other batches).", choices=PADDINGS)
    mixed_precision: Optional[str] = setting(
        None, "experiment", "mixed_float16 (loss scaling) or "
        "mixed_bfloat16; unset: float32.")
    train_batch_size: int = setting(
        128, "experiment", "Training batch over all devices (paper: 32 "
        "single-task, 128 multi-task).")
    # Evaluation batches are padded away by masks: their size changes no
    # score.
    eval_batch_size: int = setting(
        128, "outputs", "Batch size for dev/test/train predictions (changes "
        "no score).")
    learning_rate: float = setting(
        1e-4, "experiment", "Peak learning rate of the top layer (paper: "
        "5e-5 single-task, 1e-4 multi-task, 1e-5 Table 3).")
    lr_decay: float = setting(
        0.9, "experiment", "Layer-wise learning-rate decay alpha: a layer at "
        "depth d gets learning_rate * alpha^d.")
    num_train_epochs: float = setting(
        6.0, "experiment", "Training epochs (fractions allowed); one epoch "
        "is the sum of the tasks' training sizes.")
    warmup_proportion: float = setting(
        0.1, "experiment", "Share of steps of linear warm-up before linear "
        "decay to 0.")
    weight_decay_rate: float = setting(
        0.01, "experiment", "Decoupled weight decay (not on LayerNorm and "
        "biases).")
    clip_norm: float = setting(
        1.0, "experiment", "Gradients clipped to this global norm.")
    # A pretrained encoder keeps the dropout its checkpoint's config sets.
    dropout_rate: float = setting(
        0.1, "experiment", "Dropout before each head (and inside the debug "
        "encoder; a pretrained one keeps its own).")
    task_weight_exponent: float = setting(
        0.75, "experiment", "Sample tasks in proportion to |D|^exponent "
        "(1.0 proportional, 0.0 uniform).")
    # Not in the original, whose per-task loss weights only made up for
    # its approximate sampling; here sampling is exact and the default is
    # the original's plain sum. For a task the shared encoder under-serves
    # (docs/results.md, part 5: STS-B's small squared errors).
    task_loss_weights: tuple = setting(
        (), "experiment", "task:weight,... multiplies each example's loss "
        "by its task's weight (default 1; multi-task runs; not in the "
        "original).", form="task_numbers")
    double_unordered: bool = setting(
        True, "experiment", "Train on both orders of unordered pairs (MRPC, "
        "STS-B), as the original does.")
    max_train_examples: Optional[int] = setting(
        None, "experiment", "Train on the first N examples of each task "
        "(quick runs).")
    distill: bool = setting(
        False, "experiment", "Learn from the teachers' targets "
        "(--teachers).", recipe_owned=True)
    teachers: tuple = setting(
        (), "experiment", "task:teacher_model,... (with --distill).",
        inert_unless="distill", recipe_owned=True, form="task_names")
    teacher_trials: tuple = setting(
        (1,), "experiment", "Teacher trial(s) whose targets to use; several "
        "give an ensemble (mean).", inert_unless="distill", form="trials")
    teacher_annealing: bool = setting(
        True, "experiment", "lambda rises from 0 to 1 over training (target "
        "= lambda * gold + (1 - lambda) * teacher); off: lambda fixed at 1 - "
        "--distill_weight.", inert_unless="distill")
    distill_weight: float = setting(
        0.5, "experiment", "Teacher weight (1 - lambda) without annealing.",
        inert_unless="distill")
    distill_temperature: float = setting(
        1.0, "experiment", "Knowledge-distillation temperature (the paper: "
        "1).", inert_unless="distill")
    init_from_model: Optional[str] = setting(
        None, "experiment", "Table 3: start from this model folder's "
        "trained encoder and shared heads.")
    init_from_trial: int = setting(
        1, "experiment", "Which trial of --init_from_model to start from.",
        inert_unless="init_from_model")
    # === Outputs: what a run writes ===
    num_trials: int = setting(
        1, "outputs", "Trials (seeds) the folder holds; trial i uses seed + "
        "i - 1.")
    seed: int = setting(1, "experiment", "Seed of trial 1.")
    n_writes_distill: int = setting(
        5, "outputs", "The first N trials write training-set predictions "
        "(the targets of later students).")
    n_writes_test: int = setting(
        5, "outputs", "The first N trials write dev and test predictions "
        "and GLUE files.")
    eval_each_epoch: bool = setting(
        True, "outputs", "Dev scores to the log and TensorBoard after every "
        "epoch.")
    cache_features: bool = setting(
        True, "outputs", "Reuse tokenized features under BAM_DIR/cache.")

    # ---------------------------------------------------------------- build
    @classmethod
    def from_dict(cls, values):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"Unknown configuration keys {unknown}; known keys are "
                f"{sorted(names)}."
            )
        values = dict(values)
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is REQUIRED and f.name not in values]
        if missing:
            raise ConfigError(f"{', '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} "
                              "required.")
        # The command line's text is parsed by its flags (bam_tf_flags):
        # here only the forms config.json holds, lists and objects.
        for field in dataclasses.fields(cls):
            if field.metadata["form"] and field.name in values:
                values[field.name] = _FORM_READERS[field.metadata["form"]](
                    values, field.name)
        for field in dataclasses.fields(cls):
            if field.name in values:
                values[field.name] = _typed(field, values[field.name])
        config = cls(**values)
        config.validate()
        return config

    @classmethod
    def from_json(cls, path):
        """A config.json this version wrote; errors name the file, since it
        may have been edited by hand. (`ModelDir.read_config` reads a
        model folder's, written by any version.)"""
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}.") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of "
                              f"configuration keys, got "
                              f"{type(values).__name__}.")
        try:
            return cls.from_dict(values)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def section(self, name):
        """The fields of one of `SECTIONS`, as `to_dict` writes them."""
        values = self.to_dict()
        return {k: values[k] for k in SECTIONS[name]}

    def loss_weight(self, task_name):
        return dict(self.task_loss_weights).get(task_name, 1.0)

    def to_dict(self):
        d = dataclasses.asdict(self)
        for name in _with("form", None, equal=False):
            d[name] = as_saved(self.__dataclass_fields__[name], d[name])
        return d

    def replace(self, **changes):
        return RunConfig.from_dict({**self.to_dict(), **changes})

    # ------------------------------------------------------------- validate
    def validate(self):
        def check(cond, message):
            if not cond:
                raise ConfigError(message)

        check(self.model_name and "/" not in self.model_name,
              f"model_name must be a plain folder name, got "
              f"{self.model_name!r}.")
        check(bool(self.bam_dir), "bam_dir is required.")
        # The encoder may be a handle (kaggle://, hf://): keras-hub reads it.
        for name in ("bam_dir", "glue_dir"):
            value = getattr(self, name)
            problem = not_local(value)
            check(problem is None, f"--{name}={value} {problem}.")
        check(len(self.task_names) > 0, "task_names must name at least one task.")
        check(len(set(self.task_names)) == len(self.task_names),
              f"task_names has duplicates: {list(self.task_names)}.")
        check(self.data_source in DATA_SOURCES,
              f"data_source must be one of {DATA_SOURCES}, got "
              f"{self.data_source!r}.")
        check(self.debug or self.pretrained_model,
              "Give --pretrained_model (a preset, a folder or a name under "
              "BAM_DIR/pretrained_models) or --debug for a tiny random "
              "encoder.")
        check(not (self.debug and self.pretrained_model),
              "--debug builds a random encoder; it contradicts "
              f"--pretrained_model={self.pretrained_model!r}.")
        check(self.padding in PADDINGS,
              f"padding must be one of {PADDINGS}, got {self.padding!r}.")
        check(self.mixed_precision in (None, "mixed_float16",
                                       "mixed_bfloat16"),
              "mixed_precision must be mixed_float16 or mixed_bfloat16, got "
              f"{self.mixed_precision!r}.")
        check(self.max_seq_length >= 8,
              f"max_seq_length must be >= 8, got {self.max_seq_length}.")
        for name in ("train_batch_size", "eval_batch_size", "num_trials",
                     "debug_hidden_size",
                     "debug_num_layers", "debug_vocab_size"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1.")
        check(self.learning_rate > 0, "learning_rate must be > 0.")
        check(0 < self.lr_decay <= 1, "lr_decay must be in (0, 1].")
        check(self.num_train_epochs > 0, "num_train_epochs must be > 0.")
        check(0 <= self.warmup_proportion < 1,
              "warmup_proportion must be in [0, 1).")
        check(0 <= self.dropout_rate < 1, "dropout_rate must be in [0, 1).")
        check(self.task_weight_exponent >= 0,
              "task_weight_exponent must be >= 0.")
        unknown = [t for t, _ in self.task_loss_weights
                   if t not in self.task_names]
        check(not unknown,
              f"--task_loss_weights names tasks {unknown} that are not in "
              f"--task_names={','.join(self.task_names)}.")
        check(all(math.isfinite(w) and w > 0
                  for _, w in self.task_loss_weights),
              "--task_loss_weights must be finite and > 0, got "
              f"{dict(self.task_loss_weights)}.")
        check(self.max_train_examples is None or self.max_train_examples >= 1,
              "max_train_examples must be >= 1.")
        check(0 <= self.distill_weight <= 1, "distill_weight must be in [0, 1].")
        check(self.distill_temperature > 0, "distill_temperature must be > 0.")
        check(all(t >= 1 for t in self.teacher_trials) and self.teacher_trials,
              "teacher_trials are 1-based trial numbers.")
        teacher_tasks = [t for t, _ in self.teachers]
        if self.distill:
            check(len(self.teachers) > 0,
                  "--distill needs --teachers=task:model,...")
            missing = [t for t in teacher_tasks if t not in self.task_names]
            check(not missing,
                  f"--teachers names tasks {missing} that are not in "
                  f"--task_names={','.join(self.task_names)}.")
            check(self.model_name not in {m for _, m in self.teachers},
                  "A student cannot be its own teacher: model_name "
                  f"{self.model_name!r} is in --teachers.")
        else:
            check(not self.teachers,
                  "--teachers is given without --distill: pass --distill to "
                  "learn from them, or drop --teachers.")


def _with(role, value=True, equal=True):
    return tuple(f.name for f in dataclasses.fields(RunConfig)
                 if (f.metadata[role] == value) == equal)


def as_saved(field, value):
    """A structured setting's value as config.json and identity.json hold
    it: a list, or a {task: value} map."""
    if field.metadata["form"] in MAP_FORMS:
        if isinstance(value, (list, tuple)):  # pairs
            value = {k: v for k, v in value}
        return dict(value or {})
    return list(value) if isinstance(value, (list, tuple)) else value


# Which part of a run each setting belongs to. The experiment decides
# every number a run computes: two runs with equal experiments (and equal
# encoder, data and teacher fingerprints, `bam_tf.store.identity`)
# compute the same trials, wherever their files are and whatever they
# write.
SECTIONS = {name: _with("section", name)
            for name in ("experiment", "paths", "outputs")}
# Settings saved relative to the BAM_DIR, so that they move with it.
PATH_FIELDS = _with("path")
# Settings that decide the encoder's architecture and vocabulary.
ENCODER_FIELDS = _with("encoder")
# Settings a recipe sets for each of its steps.
RECIPE_OWNED = _with("recipe_owned")
# {switch: settings that change no number while it is off}.
INERT_UNLESS = {switch: _with("inert_unless", switch) for switch in
                dict.fromkeys(f.metadata["inert_unless"]
                              for f in dataclasses.fields(RunConfig)
                              if f.metadata["inert_unless"])}


_KINDS = {int: "a whole number", float: "a number", bool: "true or false",
          str: "text"}


def _typed(field, value):
    """`value` checked against the field's declared type (an int is a
    number, a whole float such as 3.0 a whole number; a bool is neither),
    so that a hand-edited config.json is refused naming the key, as a
    wrong flag is."""
    kind = field.type
    optional = False
    if getattr(kind, "__origin__", None) is typing.Union:
        kinds = [k for k in kind.__args__ if k is not type(None)]
        optional, kind = True, kinds[0]
    if kind not in _KINDS or (value is None and optional):
        return value
    ok = (isinstance(value, bool) if kind is bool
          else isinstance(value, str) if kind is str
          else not isinstance(value, bool) and (
              isinstance(value, (int, float)) if kind is float
              else isinstance(value, int) or (
                  isinstance(value, float) and value.is_integer())))
    if not ok:
        raise ConfigError(
            f"{field.name} must be {_KINDS[kind]}"
            f"{' or null' if optional else ''}, got {value!r}.")
    if kind is int:
        return int(value)
    if kind is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{field.name} must be finite, got {value}.")
    return value


def _name(value):
    if not isinstance(value, str) or not value:
        raise TypeError(value)
    return value


def _trial_number(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(value)
    return value


def _sequence(values, key, convert, what, default=()):
    """A list option (config.json's list, or a RunConfig's tuple) ->
    tuple; text such as 'rte,mrpc' is the flags' to parse, not ours."""
    items = values.get(key, default)
    try:
        if isinstance(items, (str, bytes)) or not isinstance(
                items, (list, tuple)):
            raise TypeError(items)
        return tuple(convert(v) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{key} must be a list of {what}, got {items!r}.") from None


def _task_pairs(values, key, convert, what):
    """A task -> value option as a dict (config.json) or pairs (a
    RunConfig's own field) -> sorted ((task, value), ...)."""
    pairs = values.get(key, ())
    if isinstance(pairs, dict):
        pairs = pairs.items()
    try:
        if isinstance(pairs, (str, bytes)):
            raise TypeError(pairs)
        return tuple((str(t), convert(v)) for t, v in sorted(pairs))
    except (TypeError, ValueError):
        raise ConfigError(
            f"{key} must map tasks to {what}, got {values[key]!r}.") from None


# How each form is read from config.json's lists and objects (or a
# RunConfig's own tuples), with its form in errors.
_FORM_READERS = {
    "names": lambda v, k: _sequence(v, k, _name, "task names"),
    "trials": lambda v, k: _sequence(v, k, _trial_number, "trial numbers"),
    "task_names": lambda v, k: _task_pairs(v, k, _name, "model names"),
    "task_numbers": lambda v, k: _task_pairs(v, k, float, "numbers"),
}


def glue_dir(config):
    return config.glue_dir or os.path.join(config.bam_dir, "glue_data")

