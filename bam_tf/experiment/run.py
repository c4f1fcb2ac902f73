"""train_and_evaluate(config): one model folder, `num_trials` seeds, every
output of the folder layout in docs/usage.md ("Output files").

Any number of processes may run the same command on one folder, on one
machine or many: each trial is claimed by one process before it starts
(`bam_tf.experiment.locking`), and results.json is merged under the
folder's lock, so the trials are shared out and each is trained once.
"""

import shutil
import tempfile

import tensorflow as tf
from absl import logging

from bam_tf.config import Runtime
from bam_tf.distribute import is_chief
from bam_tf.distribute import is_multi_worker
from bam_tf.errors import RunError
from bam_tf.experiment import identity as identity_lib
from bam_tf.experiment.guard import check_model_dir
from bam_tf.experiment.guard import encoder_fingerprint
from bam_tf.experiment.init_source import InitSource
from bam_tf.experiment.locking import Claim
from bam_tf.experiment.locking import ClaimLostError
from bam_tf.experiment.model_dir import ModelDir
from bam_tf.experiment.run_data import RunData
from bam_tf.experiment.trial import run_trial
from bam_tf.tasks import get_tasks


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
            config.padding not in ("packed", "max_length")):
        raise RunError("TPUs need static shapes: pass --padding=packed or "
                       "max_length.")
    _check_micro_batch_size(config, strategy, runtime)
    tasks = get_tasks(config.task_names)
    source = InitSource(config) if config.init_from_model else None
    init_print = source.check() if source else None
    if not is_chief(strategy):
        return _run_worker(config, tasks, strategy, runtime)
    # Every input is read and checked before the folder is written to.
    data = RunData(config, tasks)
    encoder_print = encoder_fingerprint(config)
    if source:
        source.check_encoder(encoder_print)
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
                record = run_trial(config, data, folder, trial, strategy,
                                   runtime, verbose, claim=claim)
            record["runtime"] = _record_runtime(config, strategy, runtime)
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


def _record_runtime(config, strategy, runtime):
    """How the trial was run, kept with its numbers: replicas and
    micro-batches sum in another order, and micro-batches draw dropout
    masks per micro-batch, so such trials agree to rounding, not bits."""
    return {"strategy": runtime.strategy,
            "replicas": int(strategy.num_replicas_in_sync),
            "micro_batch_size": runtime.micro_batches(
                config, strategy.num_replicas_in_sync),
            "jit_compile": runtime.jit_compile}


def _check_micro_batch_size(config, strategy, runtime):
    replicas = strategy.num_replicas_in_sync
    micro = runtime.micro_batches(config, replicas)
    if micro is None:
        return
    if micro < 1 or config.train_batch_size % (replicas * micro):
        raise RunError(
            f"--micro_batch_size={micro} must be a positive divisor of each "
            f"replica's batch: train_batch_size {config.train_batch_size} "
            f"over {replicas} replica(s).")


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
                run_trial(config, data, folder, trial, strategy, runtime,
                          verbose=0, scratch=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None
