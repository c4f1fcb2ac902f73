"""train_and_evaluate(config): one model folder, `num_trials` seeds, every
output of the contract (BAM_SPEC.md section 3).

Any number of processes may run the same command on one folder, on one
machine or many: each trial is claimed by one process before it starts
(`bam_tf.locking`), and results.json is merged under the folder's lock, so
the trials are shared out and each is trained once.
"""

import glob
import math
import os
import shutil
import tempfile
import weakref

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from bam_tf import config as config_lib
from bam_tf import encoders
from bam_tf import identity as identity_lib
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
from bam_tf.errors import BamError
from bam_tf.io_utils import atomic_write_text
from bam_tf.locking import Claim
from bam_tf.locking import ClaimLostError
from bam_tf.model import BamModel
from bam_tf.model_dir import ModelDir
from bam_tf.model_dir import ModelDirError
from bam_tf.optimization import build_optimizer
from bam_tf.tasks import get_tasks
from bam_tf.teachers import teacher_targets

# How a run is carried out; defined with the configuration.
Runtime = config_lib.Runtime


class RunError(BamError):
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
    try:
        teacher = ModelDir(config.bam_dir, teacher_model).read_saved_config()
    except ModelDirError:
        return
    if teacher is None:
        return
    mine = (config.debug, config.pretrained_model)
    theirs = (teacher.get("debug"), teacher.get("pretrained_model"))
    if mine[0] != theirs[0] or (not mine[0] and os.path.basename(
            str(mine[1]).rstrip("/")) != os.path.basename(
                str(theirs[1]).rstrip("/"))):
        logging.warning(
            "Teacher %s was trained from encoder %s, the student %s uses %s: "
            "not born-again distillation (same architecture) but "
            "distillation across encoders.", teacher_model,
            "debug" if theirs[0] else theirs[1], config.model_name,
            "debug" if mine[0] else mine[1])


def _source(config):
    return ModelDir(config.bam_dir, config.init_from_model)


def _check_init_source(config):
    """A run continued from another one needs its very encoder. Returns
    the fingerprint of the weights it starts from (part of the run's
    identity)."""
    source = _source(config)
    if source.read_saved_config() is None:
        raise RunError(f"--init_from_model: {source.config_path} not found.")
    source_config = source.read_config()
    differ = [f for f in _ENCODER_FIELDS if f != "pretrained_model"
              and getattr(source_config, f) != getattr(config, f)]
    if differ:
        raise RunError(
            f"--init_from_model={config.init_from_model}: its encoder "
            f"differs in {differ}; fine-tuning needs the same encoder.")
    weights = source.weights_path(config.init_from_trial)
    if not os.path.exists(weights):
        raise RunError(f"--init_from_model: {weights} not found.")
    return identity_lib.file_fingerprint(weights)


def _check_init_encoder(config, encoder_print):
    """Table 3 starts from another run's weights: that run's encoder must
    be this one (by fingerprint; for a folder written before fingerprints,
    by its encoder path)."""
    source = _source(config)
    saved = source.read_identity()
    if saved is not None:
        same = saved.get("encoder") == encoder_print
    else:
        path = (source.read_saved_config() or {}).get("pretrained_model")
        same = config.debug or path == config.pretrained_model
    if not same:
        raise RunError(
            f"--init_from_model={config.init_from_model} was trained from "
            f"another encoder than {config.pretrained_model!r} (see "
            f"{source.identity_path if saved else source.config_path}); "
            "fine-tuning needs the same encoder.")


def build_encoder(config, texts=(), vocabulary=None):
    """The run's encoder: pretrained (its dropout as its checkpoint sets
    it), or the debug encoder (vocabulary learned from `texts`, or the given
    one; dropout_rate inside it as in the heads). Random draws (the debug
    weights, dropout's seeds) come from Keras's global generator, which the
    caller seeds: building reseeds nothing."""
    if config.debug:
        return encoders.build_debug_encoder(
            texts, config.debug_vocab_size, config.debug_hidden_size,
            config.debug_num_layers,
            max_sequence_length=max(128, config.max_seq_length),
            vocabulary=vocabulary, dtype=config.mixed_precision,
            dropout=config.dropout_rate)
    return encoders.load_encoder(config.pretrained_model, config.bam_dir,
                                 dtype=config.mixed_precision)


def _encoder(config, data):
    vocabulary = None
    if config.debug and config.init_from_model:
        # The debug vocabulary is learned from the data: take the one the
        # source model was trained with.
        with open(_source(config).vocab_path, encoding="utf-8") as f:
            vocabulary = f.read().splitlines()
    return build_encoder(config, data.vocabulary_texts(), vocabulary)


def _encoder_fingerprint(config, pretrained_model=None):
    """The identity's encoder: a pretrained one is loaded to hash its
    weights and tokenizer (so a moved or re-saved copy is the same run),
    and checked against max_seq_length before anything is written."""
    if config.debug:
        return identity_lib.debug_encoder_fingerprint(config)
    encoder = encoders.load_encoder(pretrained_model or
                                    config.pretrained_model, config.bam_dir)
    _check_position_limit(config, encoder)
    return identity_lib.encoder_fingerprint(encoder)


def _check_position_limit(config, encoder):
    if config.max_seq_length > encoder.position_limit:
        raise RunError(
            f"max_seq_length {config.max_seq_length} exceeds the encoder's "
            f"position limit {encoder.position_limit} ({encoder.source}).")


def check_identity(folder, config, identity, legacy_encoder=None):
    """Raises RunError when `folder` holds a run of another identity
    (`bam_tf.identity`): what decides the numbers differs. Paths, output
    settings and the runtime may differ. A folder holding nothing of
    value (no finished trial, no checkpoint: a start that failed) takes
    the new identity. Returns whether identity.json is to be (re)written.
    Call under the folder's lock."""
    saved = recorded = folder.read_identity()
    if saved is None:
        legacy = folder.read_saved_config()
        if legacy is None:
            return True
        saved = _legacy_identity(folder, legacy, config, identity,
                                 legacy_encoder)
    differ = identity_lib.differences(saved, identity)
    if identity["encoder"] is None:  # checked without the run's inputs
        differ = [d for d in differ if d.startswith("experiment.")]
    if not differ:
        return recorded is None
    if not folder.finished_trials() and not _has_checkpoints(folder):
        logging.warning(
            "%s held a start of another run (differs in %s) that finished "
            "no trial and left no checkpoint: it now holds this one.",
            folder.path, ", ".join(differ))
        shutil.rmtree(folder.file("logs"), ignore_errors=True)
        return True
    old = identity_lib.experiment_as_read_now(saved.get("experiment", {}))
    new = identity_lib.experiment_as_read_now(identity["experiment"])
    shown = [f"{d} (saved {old[d[11:]]!r}, now {new[d[11:]]!r})"
             if d.startswith("experiment.") else d for d in differ]
    raise RunError(
        f"{folder.path} holds a run with another identity: it differs in "
        f"{', '.join(shown)}. Pick a new --model_name, or pass --overwrite "
        "to replace the folder.")


def _has_checkpoints(folder):
    return bool(glob.glob(folder.file("checkpoints", "trial_*", "*.index"))
                or glob.glob(folder.file("checkpoints", "*.weights.h5")))


def _legacy_encoder(folder, config):
    """For a folder written before identity.json whose encoder path is not
    this run's: the fingerprint of the encoder at the saved path, where it
    still exists (None otherwise). Computed before the folder is locked:
    it loads a whole encoder."""
    if config.debug or os.path.exists(folder.identity_path):
        return None
    saved = folder.read_saved_config() or {}
    path = saved.get("pretrained_model")
    if path and path != config.pretrained_model and os.path.isdir(path):
        return _encoder_fingerprint(config, path)
    return None


def _legacy_identity(folder, saved_config, config, identity, encoder=None):
    """A folder written before identity.json: its experiment from
    config.json; its encoder by path, or by `encoder` (the fingerprint of
    the saved path's encoder, where that still exists); data and teachers
    were not recorded, so they are taken as they are now."""
    saved = dict(identity, experiment=config_lib.migrate(saved_config))
    path = saved_config.get("pretrained_model")
    if config.debug or path == config.pretrained_model:
        return saved
    if encoder is not None:
        saved["encoder"] = encoder
    else:
        logging.warning(
            "%s was written before runs recorded their encoder's "
            "fingerprint; it used %s, this run uses %s: taken as the same "
            "encoder (from now on its fingerprint is recorded).",
            folder.path, path, config.pretrained_model)
    return saved


def check_model_dir(config, overwrite=False, identity=None, runtime=None):
    """Claims `config`'s folder for its identity: an error if the folder
    holds another one; otherwise writes identity.json (once), config.json
    (the newest settings, with the folder's largest num_trials) and this
    start's line in runs.json. Returns the ModelDir."""
    folder = ModelDir.of(config)
    runtime = runtime or Runtime()
    if overwrite:
        _overwrite(folder, runtime)
    if identity is None:  # without data: the experiment alone
        identity = {"experiment": config.section("experiment"),
                    "encoder": None, "data": {}, "teachers": {},
                    "init": None}
    trials = runtime.trial_numbers(config.num_trials)
    if max(trials) > config.num_trials:
        logging.info("--trials=%s goes past --num_trials=%d: the folder "
                     "now holds %d trials.", ",".join(map(str, trials)),
                     config.num_trials, max(trials))
    legacy_encoder = (_legacy_encoder(folder, config)
                      if identity["encoder"] is not None else None)
    with folder.lock():
        write = check_identity(folder, config, identity, legacy_encoder)
        saved = folder.read_saved_config() or {}
        num_trials = max([config.num_trials, max(trials),
                          saved.get("num_trials", 1)]
                         + list(folder.finished_trials()))
        if write and identity["encoder"] is not None:
            folder.write_identity(identity)
        folder.write_config(config.replace(num_trials=num_trials))
        folder.record_start(config, runtime, trials)
    return folder


def _overwrite(folder, runtime):
    held = folder.live_claims(runtime.claim_timeout_secs)
    if held:
        trial, holder = next(iter(held.items()))
        raise RunError(
            f"--overwrite: {folder.path} is in use: trial {trial} is being "
            f"run by host {holder.get('host')!r}, pid {holder.get('pid')}. "
            "Stop it first.")
    folder.remove()


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


def write_outputs(data, folder, trial, predictions, splits):
    """Prediction files and GLUE submission files of `splits`."""
    for task_id, split in splits:
        task = data.tasks[task_id]
        examples, _ = _split_data(data, task_id, split)
        eids, outputs = predictions[(task.name, split)]
        outputs_lib.write_predictions(
            outputs_lib.predictions_path(folder.path, task.name, split,
                                         trial),
            task, examples, eids, outputs)
        if split in task.submission_files:
            outputs_lib.write_glue_submission(
                folder.glue_submission_path(
                    trial, task.submission_files[split]),
                task, eids, outputs)


def _init_from_model(model, config, backbone, build_batch):
    """Table 3: start from another run's trained weights (backbone and the
    heads of tasks both runs share)."""
    folder = _source(config)
    weights = folder.weights_path(config.init_from_trial)
    source_tasks = get_tasks(folder.read_config().task_names)
    source = BamModel(
        backbone.__class__.from_config(backbone.get_config()),
        [(t.name, t.num_labels, t.is_regression) for t in source_tasks])
    source(build_batch)
    load_weights(source, weights)
    model.backbone.set_weights(source.backbone.get_weights())
    for name in model.heads:
        if name in source.heads:
            model.heads[name].set_weights(source.heads[name].get_weights())


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


def train_and_evaluate(config, strategy=None, overwrite=False, verbose=2,
                       runtime=Runtime()):
    """Trains and scores the trials of `config` that are neither finished
    nor held by another live process; writes the model folder.

    Finished trials (in results.json) are kept, not redone; an unfinished
    trial resumes from its newest readable checkpoint (weights, optimizer
    state, step, and so the position in the data stream). `runtime.trials`
    limits this process to some trial numbers. Several processes running
    this on one folder share its trials out: each trial is claimed before
    it starts, and a trial another live process holds is skipped.

    Returns:
        The folder's results dict, as in results.json (with the trials
        every process has finished so far).
    """
    runtime.validate(config)
    strategy = strategy or tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.TPUStrategy) and (
            config.padding != "max_length"):
        raise RunError("TPUs need static shapes: pass "
                       "--padding=max_length.")
    _check_micro_batch_size(config, strategy, runtime)
    tasks = get_tasks(config.task_names)
    init_print = _check_init_source(config) if config.init_from_model else (
        None)
    if not is_chief(strategy):
        return _run_worker(config, tasks, strategy, runtime)
    # Every input is read and checked before the folder is written to.
    data = RunData(config, tasks)
    encoder_print = _encoder_fingerprint(config)
    if config.init_from_model:
        _check_init_encoder(config, encoder_print)
    identity = identity_lib.build_identity(config, data, encoder_print,
                                           init_print)
    folder = check_model_dir(config, overwrite, identity=identity,
                             runtime=runtime)
    held = {}
    for trial in runtime.trial_numbers(config.num_trials):
        with folder.lock():
            if trial in folder.finished_trials():
                logging.info("trial %d already finished; kept.", trial)
                continue
            claim = folder.take_claim(trial, runtime.claim_timeout_secs)
        if claim is None:
            if is_multi_worker(strategy):
                # The other workers train every trial the chief does, in
                # step: the chief cannot skip one alone.
                raise RunError(
                    f"trial {trial} of {folder.path} is being run by another "
                    "process; a multi-worker cluster cannot skip it. Give "
                    "the cluster its own trials with --trials.")
            held[trial] = Claim.holder(folder.claim_path(trial)) or {}
            logging.info("trial %d is being run by host %r, pid %s; "
                         "skipped.", trial, held[trial].get("host"),
                         held[trial].get("pid"))
            continue
        try:
            with claim.heartbeat(runtime.heartbeat_secs):
                record = _run_trial(config, data, folder, trial,
                                    _trial_seed(config, trial), strategy,
                                    runtime, verbose, claim=claim)
            record["runtime"] = _record_runtime(strategy, runtime)
            with folder.lock():
                claim.check()
                folder.merge_results([record])
        except ClaimLostError as e:
            # Paused past the claim timeout: the trial is another
            # process's now; this one goes on with the next.
            logging.warning("%s", e)
            continue
        finally:
            # Free for the next command at once (a failed trial's
            # checkpoints stay for it to resume from).
            with folder.lock():
                claim.release()
        # The trial's record is safe: its training checkpoints can go.
        shutil.rmtree(folder.checkpoints_dir(trial), ignore_errors=True)
    if held:
        logging.warning(
            "%s: trials %s are still being run by other processes; "
            "results.json gets them when they finish.", folder.path,
            sorted(held))
    return folder.read_results()


def _record_runtime(strategy, runtime):
    """How the trial was run, kept with its numbers: replicas and
    micro-batches sum in another order, and micro-batches draw dropout
    masks per micro-batch, so such trials agree to rounding, not bits."""
    return {"strategy": runtime.strategy,
            "replicas": int(strategy.num_replicas_in_sync),
            "micro_batch_size": runtime.micro_batch_size,
            "jit_compile": runtime.jit_compile}


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
    folder = ModelDir.of(config)
    done = folder.finished_trials()
    data = RunData(config, tasks)
    scratch = tempfile.mkdtemp(prefix="bam_tf_worker_")
    try:
        for trial in runtime.trial_numbers(config.num_trials):
            if trial not in done:
                _run_trial(config, data, folder, trial,
                           _trial_seed(config, trial), strategy, runtime,
                           verbose=0, scratch=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None


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


def _unreadable(path):
    """Why the checkpoint at `path` cannot be restored, or None: every
    tensor is read, so a truncated data file is found before any variable
    is overwritten."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    # The reader is a C++ binding: a short file surfaces as any of these.
    except (tf.errors.OpError, ValueError, OSError, IndexError, KeyError,
            RuntimeError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return None


def _checkpoints_newest_first(directory):
    try:
        # A damaged list is ignored (with TensorFlow's warning naming it).
        state = tf.train.get_checkpoint_state(directory)
        paths = list(state.all_model_checkpoint_paths) if state else []
    except (tf.errors.OpError, ValueError) as e:
        logging.warning("%s: unreadable checkpoint list (%s); looking for "
                        "checkpoint files instead.",
                        os.path.join(directory, "checkpoint"), e)
        paths = []
    if not paths:
        paths = [p[:-len(".index")] for p in glob.glob(
            os.path.join(directory, "ckpt-*.index"))]
    number = lambda p: int(p.rsplit("-", 1)[1]) if p.rsplit(
        "-", 1)[1].isdigit() else -1
    return sorted(paths, key=number, reverse=True)


def restore_newest_readable(checkpoint, directory, trial):
    """Restores the newest checkpoint of `directory` that reads back whole;
    a damaged newer one is skipped with a warning naming it. Returns the
    path restored, or None (none, or none readable: the trial starts
    again, and ends as an uninterrupted one would)."""
    paths = _checkpoints_newest_first(directory)
    for path in paths:
        problem = _unreadable(path)
        if problem:
            logging.warning("trial %d: checkpoint %s is damaged (%s); "
                            "trying the one before it.", trial, path,
                            problem)
            continue
        try:
            checkpoint.restore(path).assert_consumed()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise RunError(
                f"{path}: the checkpoint does not fit this run's model "
                f"({type(e).__name__}: {str(e).splitlines()[0]}). Delete "
                f"{directory} to start trial {trial} again.") from None
        return path
    if paths:
        logging.warning("trial %d: no readable checkpoint in %s; the trial "
                        "starts again from step 0.", trial, directory)
    return None


def _run_trial(config, data, folder, trial, seed, strategy, runtime,
               verbose, scratch=None, claim=None):
    """Trains and scores one trial; returns its record. With `scratch`
    (a non-chief worker), only trains: it reads the chief's checkpoints and
    writes its own to `scratch`. `claim` (the chief's hold on the trial) is
    checked before anything lasting is written."""
    check_claim = claim.check if claim else (lambda: None)
    keras.utils.set_random_seed(seed)
    # Every variable, the encoder's too, must be made under the strategy's
    # scope to be mirrored (and to get its optimizer slots beside it).
    with strategy.scope():
        # Seeded by the trial's set_random_seed above, nothing between.
        encoder = _encoder(config, data)
    _check_position_limit(config, encoder)
    if data.train_features is None:
        data.featurize(encoder.tokenizer)
    if scratch is None:
        atomic_write_text(folder.vocab_path, "\n".join(
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
            steps_per_execution=runtime.steps_per_execution,
            jit_compile=runtime.jit_compile)
        # Built now so that a checkpoint can restore its slots.
        model.optimizer.build(model.trainable_variables)
    # Dropout's random state is no weight; without it a resumed run would
    # draw other masks than an uninterrupted one.
    seed_states = [v.value for v in model.variables
                   if v.name == "seed_generator_state"]
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                     seed_states=seed_states)
    checkpoints = folder.checkpoints_dir(trial)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(scratch, f"trial_{trial}") if scratch
        else checkpoints, max_to_keep=2)
    losses = EpochLosses(manager.directory, epoch_steps, total_steps)

    def save(step):
        check_claim()
        losses.save(step)
        manager.save(checkpoint_number=step)
        losses.prune(int(path.rsplit("-", 1)[1])
                     for path in manager.checkpoints)

    start_step = 0
    if os.path.isdir(checkpoints):
        latest = restore_newest_readable(checkpoint, checkpoints, trial)
        if latest:
            start_step = int(model.optimizer.iterations.numpy())
            logging.info("trial %d: resumed at step %d of %d from %s",
                         trial, start_step, total_steps, latest)
            if scratch is None and not losses.restore(start_step):
                logging.warning(
                    "trial %d: no loss sums were saved with %s; the mean "
                    "training loss of the epochs before it is unknown "
                    "(None).", trial, latest)
    if start_step < total_steps:
        extra = [_StopIfClaimLost(claim)] if claim else []
        _fit(model, data, config, train_ds, scratch or folder.path, trial,
             save, losses, start_step, total_steps, epoch_steps, runtime,
             verbose, score_epochs=scratch is None, extra_callbacks=extra)
        save(total_steps)
    if scratch:
        return None
    check_claim()
    weights = folder.weights_path(trial)
    tmp = weights[:-len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, weights)
    splits = _output_splits(data, config, trial)
    dev = _dev_splits(data)
    predictions = predict_splits(
        model, data, config, dev + [s for s in splits if s not in dev])
    scores, avg = evaluate(model, data, config, predictions)
    check_claim()
    write_outputs(data, folder, trial, predictions, splits)
    logging.info("trial %d: avg %.2f %s", trial, avg, scores)
    return {"trial": trial, "seed": seed, "metrics": scores, "avg": avg,
            "steps": total_steps, "train_loss": losses.means()}


def _fit(model, data, config, train_ds, mdir, trial, save, losses,
         start_step, total_steps, epoch_steps, runtime, verbose,
         score_epochs=True, extra_callbacks=()):
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
                 tensorboard, *extra_callbacks]
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
