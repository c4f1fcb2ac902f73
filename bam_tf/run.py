"""train_and_evaluate(config): one model folder, `num_trials` seeds, every
output of the contract (BAM_SPEC.md section 3)."""

import dataclasses
import json
import math
import os
import shutil
import tempfile
import weakref
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from bam_tf import config as config_lib
from bam_tf import encoders
from bam_tf import outputs as outputs_lib
from bam_tf import scoring
from bam_tf.callbacks import EpochLosses
from bam_tf.callbacks import PeriodicCheckpoint
from bam_tf.callbacks import StopAtStep
from bam_tf.callbacks import StopOnNonFiniteLoss
from bam_tf.callbacks import TensorBoardLogger
from bam_tf.data import pipeline
from bam_tf.data.examples import DataError
from bam_tf.data.features import Featurizer
from bam_tf.data.features import cached_features
from bam_tf.data.loading import load_split
from bam_tf.data.sampling import steps_per_epoch
from bam_tf.distribute import is_chief
from bam_tf.distribute import is_multi_worker
from bam_tf.io_utils import atomic_write_json
from bam_tf.io_utils import atomic_write_text
from bam_tf.model import BamModel
from bam_tf.optimization import build_optimizer
from bam_tf.tasks import get_tasks
from bam_tf.teachers import teacher_targets

class RunError(ValueError):
    pass


class RunData:
    """Examples and features of every split a run needs, built once."""

    def __init__(self, config, tasks):
        self.config = config
        self.tasks = tasks
        gdir = config_lib.glue_dir(config)
        load = lambda task, split, **kw: load_split(
            task, split, gdir, config.data_source, **kw)
        self.train_examples = [
            load(t, "train", double_unordered=config.double_unordered,
                 max_examples=config.max_train_examples) for t in tasks]
        self.eval_examples = {}  # (task, split) -> Examples
        for task in tasks:
            for split in task.dev_splits:
                self.eval_examples[(task.name, split)] = load(task, split)
            for split in task.test_splits:
                try:
                    self.eval_examples[(task.name, split)] = load(task, split)
                except DataError as e:
                    logging.warning("No %s predictions for %s: %s",
                                    split, task.name, e)
        # Teacher targets joined to the training examples by id, read once
        # and checked before any training starts.
        self.teachers = {}
        teachers = dict(config.teachers) if config.distill else {}
        for task, examples in zip(tasks, self.train_examples):
            if task.name in teachers:
                self.teachers[task.name] = teacher_targets(
                    config.bam_dir, teachers[task.name], task, examples,
                    config.teacher_trials)
                _warn_if_other_encoder(config, teachers[task.name])
        self.train_features = None  # set by featurize, once per run
        self.eval_features = None

    def vocabulary_texts(self):
        return encoders.debug_vocabulary_texts(self.train_examples)

    def featurize(self, tokenizer):
        featurizer = Featurizer(tokenizer, self.config.max_seq_length)
        cache = (os.path.join(self.config.bam_dir, "cache", "features")
                 if self.config.cache_features else None)
        self.train_features = [cached_features(featurizer, e, cache)
                               for e in self.train_examples]
        self.eval_features = {key: cached_features(featurizer, e, cache)
                              for key, e in self.eval_examples.items()}


# Fields that decide the encoder's architecture and vocabulary.
_ENCODER_FIELDS = ("pretrained_model", "debug", "debug_hidden_size",
                   "debug_num_layers", "debug_vocab_size")


def _warn_if_other_encoder(config, teacher_model):
    """Born-again students share their teachers' architecture (paper
    section 3); another encoder is allowed, but said."""
    path = os.path.join(config.bam_dir, "models", teacher_model,
                        "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            teacher = json.load(f)
    except (OSError, ValueError):
        return
    mine = (config.debug, config.pretrained_model)
    theirs = (teacher.get("debug"), teacher.get("pretrained_model"))
    if mine != theirs:
        logging.warning(
            "Teacher %s was trained from encoder %s, the student %s uses %s: "
            "not born-again distillation (same architecture) but "
            "distillation across encoders.", teacher_model,
            "debug" if theirs[0] else theirs[1], config.model_name,
            "debug" if mine[0] else mine[1])


def _source_dir(config):
    return os.path.join(config.bam_dir, "models", config.init_from_model)


def _check_init_source(config):
    """A run continued from another one needs its very encoder."""
    source_dir = _source_dir(config)
    path = os.path.join(source_dir, "config.json")
    if not os.path.exists(path):
        raise RunError(f"--init_from_model: {path} not found.")
    source = config_lib.RunConfig.from_json(path)
    differ = [f for f in _ENCODER_FIELDS
              if getattr(source, f) != getattr(config, f)]
    if differ:
        raise RunError(
            f"--init_from_model={config.init_from_model}: its encoder "
            f"differs in {differ}; fine-tuning needs the same encoder.")
    return source


def build_encoder(config, seed=1, texts=(), vocabulary=None):
    """The run's encoder: pretrained (its dropout as its checkpoint sets
    it), or the debug encoder (vocabulary learned from `texts`, or the given
    one; dropout_rate inside it as in the heads)."""
    if config.debug:
        return encoders.build_debug_encoder(
            texts, config.debug_vocab_size, config.debug_hidden_size,
            config.debug_num_layers,
            max_sequence_length=max(128, config.max_seq_length), seed=seed,
            vocabulary=vocabulary, dtype=config.mixed_precision,
            dropout=config.dropout_rate)
    keras.utils.set_random_seed(seed)
    return encoders.load_encoder(config.pretrained_model, config.bam_dir,
                                 dtype=config.mixed_precision)


def _encoder(config, data, seed):
    vocabulary = None
    if config.debug and config.init_from_model:
        # The debug vocabulary is learned from the data: take the one the
        # source model was trained with.
        with open(os.path.join(_source_dir(config), "vocab.txt"),
                  encoding="utf-8") as f:
            vocabulary = f.read().splitlines()
    return build_encoder(config, seed, data.vocabulary_texts(), vocabulary)


def _as_read_now(saved):
    """A saved configuration as this version reads it: keys added since it
    was written take their defaults, which keep the earlier behaviour, so
    a folder written before a new option stays the same run. One this
    version cannot read is compared as it is (its odd keys then differ)."""
    try:
        return config_lib.RunConfig.from_dict(saved).to_dict()
    except (TypeError, ValueError):  # ConfigError is a ValueError
        return saved


def config_differences(saved, current):
    """The keys in which two saved configurations (dicts) differ, except
    num_trials: a folder's trials are added to (or only some of them asked
    for) without it becoming another run."""
    saved, current = _as_read_now(saved), _as_read_now(current)
    return sorted(k for k in set(saved) | set(current)
                  if k != "num_trials" and saved.get(k) != current.get(k))


def check_model_dir(config, overwrite=False):
    """A model folder holds one configuration: a different one under the same
    name is an error, never a silent mix."""
    mdir = config_lib.model_dir(config)
    path = os.path.join(mdir, "config.json")
    current = config.to_dict()
    if os.path.exists(path) and not overwrite:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        differ = config_differences(saved, current)
        if differ:
            raise RunError(
                f"{mdir} holds a run with another configuration (differs in "
                f"{differ}); pick a new --model_name or pass --overwrite.")
        # Asking for fewer trials than the folder was run with keeps the
        # saved count: the folder's trials beyond this run's stay its own.
        current["num_trials"] = max(current["num_trials"],
                                    saved.get("num_trials", 1))
    if overwrite and os.path.isdir(mdir):
        shutil.rmtree(mdir)
    os.makedirs(mdir, exist_ok=True)
    atomic_write_json(path, current)
    return mdir


def load_results(mdir):
    path = os.path.join(mdir, "results.json")
    if not os.path.exists(path):
        return {"trials": []}
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: unreadable results file ({e}).") from None
    if not isinstance(results, dict) or not isinstance(
            results.get("trials"), list):
        raise RunError(f"{path}: expected {{\"trials\": [...]}}.")
    return results


def write_results(mdir, results):
    atomic_write_json(os.path.join(mdir, "results.json"), results)
    atomic_write_text(os.path.join(mdir, "results.txt"),
                      format_results(results))


def format_results(results):
    lines = []
    for trial in results["trials"]:
        lines.append(f"trial {trial['trial']} (seed {trial['seed']}): "
                     f"avg {trial['avg']:.2f}")
        for task, metrics in sorted(trial["metrics"].items()):
            shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(
                metrics.items()))
            lines.append(f"  {task}: {shown}")
    return "\n".join(lines) + "\n"


def predict_split(model, task, task_id, features, config, label_slots):
    """(eids, outputs) of one split: logits, or regression predictions on
    the label scale; padding examples dropped."""
    static = config.padding == "max_length"
    dataset = pipeline.eval_dataset(
        task, task_id, features, config.eval_batch_size, label_slots,
        sequence_length=config.max_seq_length if static else None,
        static_batches=static,
        bucket_lengths=(pipeline.bucket_boundaries(config.max_seq_length)
                        if config.padding == "buckets" else None))
    result = _predict(model, dataset)
    real = result["is_real"] > 0
    outputs = np.asarray(result["outputs"][task.name])[real]
    if task.is_regression:
        outputs = task.unscale(outputs)
    return result["eid"][real].astype(np.int64), outputs


_LOCAL_PREDICT = weakref.WeakKeyDictionary()


def _predict(model, dataset):
    if not is_multi_worker(model.distribute_strategy):
        return model.predict(dataset, verbose=0)
    # Under MultiWorkerMirroredStrategy model.predict makes every worker
    # take part in each batch; the chief predicts alone instead, reading its
    # copy of the (synchronised) weights.
    if model not in _LOCAL_PREDICT:
        _LOCAL_PREDICT[model] = tf.function(model.predict_step,
                                            reduce_retracing=True)
    parts = [_LOCAL_PREDICT[model](batch) for batch in dataset]
    return tf.nest.map_structure(
        lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *parts)


def _split_data(data, task_id, split):
    """(examples, features) of one split of the run's task_id-th task."""
    if split == "train":
        return data.train_examples[task_id], data.train_features[task_id]
    key = (data.tasks[task_id].name, split)
    return data.eval_examples[key], data.eval_features[key]


def predict_splits(model, data, config, splits):
    """{(task, split): (eids, outputs)} for the given (task_id, split)s."""
    slots = pipeline.num_label_slots(data.tasks)
    predictions = {}
    for task_id, split in splits:
        task = data.tasks[task_id]
        _, features = _split_data(data, task_id, split)
        predictions[(task.name, split)] = predict_split(
            model, task, task_id, features, config, slots)
    return predictions


def _dev_splits(data):
    return [(i, split) for i, task in enumerate(data.tasks)
            for split in task.dev_splits]


def evaluate(model, data, config, predictions=None):
    """{task: metrics} over each task's dev split(s), and the average.

    `predictions` (from `predict_splits`) saves predicting the dev splits
    again when they are at hand.
    """
    if predictions is None:
        predictions = predict_splits(model, data, config, _dev_splits(data))
    scores = {}
    for task_id, split in _dev_splits(data):
        task = data.tasks[task_id]
        _, features = _split_data(data, task_id, split)
        eids, outputs = predictions[(task.name, split)]
        # Both sides sorted by example id line up row for row.
        metrics = scoring.score_split(
            task, features.labels[np.argsort(features.eids)],
            outputs[np.argsort(eids)])
        if split == task.dev_splits[0]:
            scores[task.name] = metrics
        else:  # MNLI mismatched: beside matched, not in the average
            scores[task.name].update(
                {f"{k}_{split}": v for k, v in metrics.items()})
    return scores, scoring.glue_average(scores, data.tasks)


def _output_splits(data, config, trial):
    """The splits a trial writes predictions of: train for the first
    n_writes_distill trials, dev and test for the first n_writes_test."""
    splits = []
    for task_id, task in enumerate(data.tasks):
        if trial <= config.n_writes_distill:
            splits.append((task_id, "train"))
        if trial <= config.n_writes_test:
            splits += [(task_id, split)
                       for split in task.dev_splits + task.test_splits
                       if (task.name, split) in data.eval_features]
    return splits


def write_outputs(data, mdir, trial, predictions, splits):
    """Prediction files and GLUE submission files of `splits`."""
    for task_id, split in splits:
        task = data.tasks[task_id]
        examples, _ = _split_data(data, task_id, split)
        eids, outputs = predictions[(task.name, split)]
        outputs_lib.write_predictions(
            outputs_lib.predictions_path(mdir, task.name, split, trial),
            task, examples, eids, outputs)
        if split in task.submission_files:
            outputs_lib.write_glue_submission(
                os.path.join(mdir, "outputs", "glue", str(trial),
                             task.submission_files[split]),
                task, eids, outputs)


def _init_from_model(model, config, backbone, build_batch):
    """Table 3: start from another run's trained weights (backbone and the
    heads of tasks both runs share)."""
    weights = os.path.join(_source_dir(config), "checkpoints",
                           f"trial_{config.init_from_trial}.weights.h5")
    if not os.path.exists(weights):
        raise RunError(f"--init_from_model: {weights} not found.")
    source_config = _check_init_source(config)
    source_tasks = get_tasks(source_config.task_names)
    source = BamModel(
        backbone.__class__.from_config(backbone.get_config()),
        [(t.name, t.num_labels, t.is_regression) for t in source_tasks])
    source(build_batch)
    source.load_weights(weights)
    model.backbone.set_weights(source.backbone.get_weights())
    for name in model.heads:
        if name in source.heads:
            model.heads[name].set_weights(source.heads[name].get_weights())


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How a run is carried out, not what it computes (so not part of the
    saved configuration): checkpoint frequency, XLA, micro-batches.

    Attributes:
        save_checkpoints_steps: checkpoint every N steps; None: by time.
        save_checkpoints_secs: checkpoint every so many seconds.
        micro_batch_size: examples each replica runs through the network at
            once, gradients summed over its batch before the one update
            (`BamModel`); None: the whole batch. Memory, not the
            experiment: the batches, updates and steps stay those of
            `train_batch_size` (the sums' order and dropout masks differ).
    """

    save_checkpoints_steps: Optional[int] = None
    save_checkpoints_secs: float = 300.0
    # XLA compiles one program per input shape: pair it with
    # padding "buckets" or "max_length". Slower on CPUs (TRAPS.md 3).
    jit_compile: bool = False
    micro_batch_size: Optional[int] = None


def train_and_evaluate(config, strategy=None, overwrite=False, verbose=2,
                       runtime=Runtime()):
    """Trains and scores `config.num_trials` models; writes the model folder.

    Finished trials (in results.json) are kept, not redone; an unfinished
    trial resumes from its last checkpoint (weights, optimizer state, step,
    and so the position in the data stream).

    Returns:
        The results dict, as written to results.json.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.TPUStrategy) and (
            config.padding != "max_length"):
        raise RunError("TPUs need static shapes: pass "
                       "--padding=max_length.")
    _check_micro_batch_size(config, strategy, runtime)
    tasks = get_tasks(config.task_names)
    if config.init_from_model:
        _check_init_source(config)
    if not is_chief(strategy):
        return _run_worker(config, tasks, strategy, runtime)
    mdir = check_model_dir(config, overwrite)
    data = RunData(config, tasks)
    results = load_results(mdir)
    done = {t["trial"] for t in results["trials"]}
    for trial in range(1, config.num_trials + 1):
        if trial in done:
            logging.info("trial %d already finished; kept.", trial)
            continue
        seed = _trial_seed(config, trial)
        record = _run_trial(config, data, mdir, trial, seed, strategy,
                            runtime, verbose)
        results["trials"] = sorted(results["trials"] + [record],
                                   key=lambda t: t["trial"])
        write_results(mdir, results)
        # The trial's record is safe: its training checkpoints can go.
        shutil.rmtree(os.path.join(mdir, "checkpoints", f"trial_{trial}"),
                      ignore_errors=True)
    return results


def _check_micro_batch_size(config, strategy, runtime):
    micro = runtime.micro_batch_size
    if micro is None:
        return
    replicas = strategy.num_replicas_in_sync
    if micro < 1 or config.train_batch_size % (replicas * micro):
        raise RunError(
            f"--micro_batch_size={micro} must be a positive divisor of each "
            f"replica's batch: train_batch_size {config.train_batch_size} "
            f"over {replicas} replica(s).")


def _trial_seed(config, trial):
    return config.seed + trial - 1


def _run_worker(config, tasks, strategy, runtime):
    """A non-chief worker: trains each trial the chief trains, in step with
    it, and writes only to a scratch folder (saving takes every worker, as
    checkpoints may need collective reads)."""
    mdir = config_lib.model_dir(config)
    done = {t["trial"] for t in load_results(mdir)["trials"]}
    data = RunData(config, tasks)
    scratch = tempfile.mkdtemp(prefix="bam_tf_worker_")
    try:
        for trial in range(1, config.num_trials + 1):
            if trial not in done:
                _run_trial(config, data, mdir, trial,
                           _trial_seed(config, trial), strategy, runtime,
                           verbose=0, scratch=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None


def _run_trial(config, data, mdir, trial, seed, strategy, runtime, verbose,
               scratch=None):
    """Trains and scores one trial; returns its record. With `scratch`
    (a non-chief worker), only trains: it reads the chief's checkpoints and
    writes its own to `scratch`."""
    keras.utils.set_random_seed(seed)
    # Every variable, the encoder's too, must be made under the strategy's
    # scope to be mirrored (and to get its optimizer slots beside it).
    with strategy.scope():
        encoder = _encoder(config, data, seed)
    if config.max_seq_length > encoder.position_limit:
        raise RunError(
            f"max_seq_length {config.max_seq_length} exceeds the encoder's "
            f"position limit {encoder.position_limit} ({encoder.source}).")
    if data.train_features is None:
        data.featurize(encoder.tokenizer)
    if scratch is None:
        atomic_write_text(os.path.join(mdir, "vocab.txt"), "\n".join(
            encoder.tokenizer.get_vocabulary()) + "\n")
    train_ds, probabilities = pipeline.train_dataset(
        data.tasks, data.train_features, config.train_batch_size, seed,
        config.task_weight_exponent, data.teachers,
        sequence_length=(config.max_seq_length
                         if config.padding == "max_length" else None),
        bucket_lengths=(pipeline.bucket_boundaries(config.max_seq_length)
                        if config.padding == "buckets" else None))
    epoch_steps = steps_per_epoch([len(f) for f in data.train_features],
                                  config.train_batch_size)
    total_steps = max(1, int(config.num_train_epochs * epoch_steps))
    logging.info("trial %d: seed %d, %d steps (%d per epoch), sampling %s%s",
                 trial, seed, total_steps, epoch_steps,
                 {t: round(float(p), 4)
                  for t, p in zip(config.task_names, probabilities)},
                 f", micro-batches of {runtime.micro_batch_size} per replica"
                 if runtime.micro_batch_size else "")
    with strategy.scope():
        model = BamModel(
            encoder.backbone,
            [(t.name, t.num_labels, t.is_regression) for t in data.tasks],
            dropout_rate=config.dropout_rate, total_steps=total_steps,
            distill=config.distill,
            teacher_annealing=config.teacher_annealing,
            distill_weight=config.distill_weight,
            distill_temperature=config.distill_temperature,
            global_batch_size=config.train_batch_size,
            loss_weights=[config.loss_weight(t.name) for t in data.tasks],
            micro_batch_size=runtime.micro_batch_size,
            dtype=config.mixed_precision)
        build_batch = next(iter(train_ds))
        model(build_batch)
        if config.init_from_model:
            _init_from_model(model, config, encoder.backbone, build_batch)
        model.compile(
            optimizer=build_optimizer(
                model, encoder.backbone, config.learning_rate, total_steps,
                config.warmup_proportion, config.weight_decay_rate,
                config.lr_decay, config.clip_norm,
                jit_update=config.padding != "longest"),
            steps_per_execution=config.steps_per_execution,
            jit_compile=runtime.jit_compile)
        # Built now so that a checkpoint can restore its slots.
        model.optimizer.build(model.trainable_variables)
    # Dropout's random state is no weight; without it a resumed run would
    # draw other masks than an uninterrupted one.
    seed_states = [v.value for v in model.variables
                   if v.name == "seed_generator_state"]
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                     seed_states=seed_states)
    checkpoints = os.path.join(mdir, "checkpoints", f"trial_{trial}")
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(scratch, f"trial_{trial}") if scratch
        else checkpoints, max_to_keep=2)
    losses = EpochLosses(manager.directory, epoch_steps, total_steps)

    def save(step):
        losses.save(step)
        manager.save(checkpoint_number=step)
        losses.prune(int(path.rsplit("-", 1)[1])
                     for path in manager.checkpoints)

    latest = tf.train.latest_checkpoint(checkpoints)
    start_step = 0
    if latest:
        checkpoint.restore(latest).assert_consumed()
        start_step = int(model.optimizer.iterations.numpy())
        logging.info("trial %d: resumed at step %d of %d from %s", trial,
                     start_step, total_steps, latest)
        if scratch is None and not losses.restore(start_step):
            logging.warning(
                "trial %d: no loss sums were saved with %s; the mean "
                "training loss of the epochs before it is unknown (None).",
                trial, latest)
    if start_step < total_steps:
        _fit(model, data, config, train_ds, scratch or mdir, trial, save,
             losses, start_step, total_steps, epoch_steps, runtime, verbose,
             score_epochs=scratch is None)
        save(total_steps)
    if scratch:
        return None
    weights = os.path.join(mdir, "checkpoints", f"trial_{trial}.weights.h5")
    tmp = weights[:-len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, weights)
    splits = _output_splits(data, config, trial)
    dev = _dev_splits(data)
    predictions = predict_splits(
        model, data, config, dev + [s for s in splits if s not in dev])
    scores, avg = evaluate(model, data, config, predictions)
    write_outputs(data, mdir, trial, predictions, splits)
    logging.info("trial %d: avg %.2f %s", trial, avg, scores)
    return {"trial": trial, "seed": seed, "metrics": scores, "avg": avg,
            "steps": total_steps, "train_loss": losses.means()}


def _fit(model, data, config, train_ds, mdir, trial, save, losses,
         start_step, total_steps, epoch_steps, runtime, verbose,
         score_epochs=True):
    """Trains from `start_step` to `total_steps`, calling `save(step)` for
    checkpoints; `losses` (an EpochLosses) counts the training loss."""
    log_dir = os.path.join(mdir, "logs", f"trial_{trial}")
    every_steps = runtime.save_checkpoints_steps
    if every_steps is None and is_multi_worker(model.distribute_strategy):
        # Workers must save together; their clocks do not agree, their
        # steps do: once per epoch unless told otherwise.
        every_steps = epoch_steps
    tensorboard = TensorBoardLogger(
        log_dir, evaluate=(lambda: evaluate(model, data, config))
        if config.eval_each_epoch and score_epochs else None)
    callbacks = [StopOnNonFiniteLoss(config.task_names), losses,
                 StopAtStep(total_steps),
                 PeriodicCheckpoint(save, every_steps,
                                    runtime.save_checkpoints_secs),
                 tensorboard]
    num_epochs = math.ceil(total_steps / epoch_steps)
    epoch, done = divmod(start_step, epoch_steps)
    # `fit`'s epochs have one length; a run resumed mid-epoch first
    # finishes that epoch alone, so that epochs (dev scores, their losses)
    # end at the same steps as in an uninterrupted run.
    parts = []
    if done:
        parts.append((epoch, epoch + 1, epoch_steps - done))
        epoch += 1
    parts.append((epoch, num_epochs, epoch_steps))
    try:
        for first, last, steps in parts:
            step = int(model.optimizer.iterations.numpy())
            if step >= total_steps:
                break
            # The stream is a pure function of the seed: skipping the
            # batches already trained on puts a resumed run where the
            # killed one was.
            model.fit(train_ds.skip(step) if step else train_ds,
                      initial_epoch=first, epochs=last,
                      steps_per_epoch=min(steps, total_steps - step),
                      callbacks=callbacks, verbose=verbose)
    finally:
        tensorboard.close()
