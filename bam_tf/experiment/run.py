"""train_and_evaluate(config): one model folder, `num_trials` seeds, every
output of the folder layout in docs/usage.md ("Output files").

Any number of processes may run the same command on one folder, on one
machine or many: the folder (`bam_tf.store`) hands each process the
trials no other live process holds, and takes their records back, so the
trials are shared out and each is trained once.
"""

import contextlib

import tensorflow as tf

from bam_tf.distribute import chief_trials
from bam_tf.distribute import followed_trials
from bam_tf.distribute import get_strategy
from bam_tf.distribute import is_chief
from bam_tf.distribute import is_multi_worker
from bam_tf.distribute import worker_loss_named
from bam_tf.experiment.inputs import RunSources
from bam_tf.experiment.trial import run_trial
from bam_tf.runtime import Runtime
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.opening import open_model_dir


def train_and_evaluate(config, strategy=None, overwrite=False, verbose=2,
                       runtime=Runtime()):
    """Trains and scores the trials of `config` that are neither finished
    nor held by another live process; writes the model folder.

    Finished trials (in results.json) are kept, not redone; an unfinished
    trial resumes from its newest readable checkpoint (weights, optimizer
    state, step, and so the position in the data stream). `runtime.trials`
    limits this process to some trial numbers. Several processes running
    this on one folder share its trials out. `strategy`: default, the one
    `runtime` names (made after `runtime` is checked).

    Returns:
        The folder's results dict, as in results.json (with the trials
        every process has finished so far).

    Example:

    ```python
    config = RunConfig.from_dict({**PRESETS["debug"], "model_name": "rte",
                                  "bam_dir": bam_dir, "task_names": ["rte"]})
    train_and_evaluate(config)["trials"][0]["avg"]
    ```
    """
    if strategy is None:
        runtime.validate(config)  # before any device is touched
        strategy = get_strategy(runtime.strategy, runtime.tpu)
    runtime.validate(config, strategy.num_replicas_in_sync,
                     tpu=isinstance(strategy, tf.distribute.TPUStrategy))
    # Every input is read and checked before the folder is written to.
    sources = RunSources.read(config)
    trials = runtime.trial_numbers(config.num_trials)
    how = runtime.record(config, strategy.num_replicas_in_sync)
    chief = is_chief(strategy)
    # A worker lost, at any step: every other stops with its name.
    with worker_loss_named(strategy):
        if chief:
            folder = open_model_dir(
                config, overwrite, identity=sources.identity,
                runtime=runtime, trials=trials)
            holds = folder.claim_trials(trials, runtime.claim_timeout_secs,
                                        runtime.heartbeat_secs)
            if is_multi_worker(strategy):
                # The other workers train the trials the chief claims.
                holds = chief_trials(strategy, holds)
            inputs = None  # featurized once a trial is claimed
        else:
            folder = ModelDir.of(config)
            # While the chief opens the folder and claims its first trial.
            inputs = sources.featurize()
            holds = folder.claim_trials(
                followed_trials(strategy), runtime.claim_timeout_secs,
                runtime.heartbeat_secs, follow=True)
        # Closed on any error: a worker's scratch folder goes at once.
        with contextlib.closing(holds):
            for hold in holds:
                with hold:
                    inputs = inputs or sources.featurize()
                    record = run_trial(inputs, hold, strategy, runtime,
                                       verbose if chief else 0)
                    if record:
                        hold.commit({**record, "runtime": how})
    return folder.read_results() if chief else None
