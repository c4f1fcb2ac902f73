"""A tf.distribute strategy from its name (scripts choose; the library only
receives the strategy), and what the workers of a multi-worker run do in
step."""

import contextlib
import re

import tensorflow as tf

from bam_tf.errors import RunError
from bam_tf.runtime import STRATEGIES  # noqa: F401 (named here too)


def get_strategy(name="default", tpu=None):
    """default: one device; mirrored: all local GPUs; multi_worker:
    MultiWorkerMirroredStrategy from TF_CONFIG; tpu: TPUStrategy on `tpu`."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}; one of {STRATEGIES}.")


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """False only on the non-chief workers of a multi-worker run: they train
    in step with the chief, but the chief alone writes what lasts."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not is_multi_worker(strategy) or resolver is None or (
            resolver.task_type is None):
        return True
    if "chief" in resolver.cluster_spec().as_dict():
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def chief_trials(strategy, holds):
    """Yields the chief's `holds` (`TrialHold`s), telling the other workers
    of a multi-worker run each one's trial before it is trained, and that
    there is none left after the last (`followed_trials`).

    The chief alone decides which trials are finished or held by other
    processes, under the folder's lock; the others train what it trains,
    in step (their collectives pair up step by step, so a worker on
    another trial would silently train on a mix of two).

    Example:

    ```python
    holds = folder.claim_trials([1, 2], 600.0, 30.0)
    for hold in chief_trials(strategy, holds): ...
    ```
    """
    with contextlib.closing(holds):
        for hold in holds:
            _from_chief(strategy, hold.trial)
            yield hold
    _from_chief(strategy, 0)


def followed_trials(strategy):
    """Yields the trial numbers the chief announces (`chief_trials`), in
    its order, until it says there is none left: what a non-chief worker
    trains."""
    while True:
        trial = _from_chief(strategy)
        if not trial:
            return
        yield trial


def _from_chief(strategy, value=None):
    """The chief's `value` (a trial number, or 0), in every worker (the
    others give None): an all-reduce every worker joins, so none returns
    before all have come. A worker that has died makes it raise
    (UnavailableError) instead of waiting."""
    # Summed over replicas: (value, 1) from each of the chief's, (0, 0)
    # from the others'; the chief may have several.
    part = [0, 0] if value is None else [value, 1]

    # Run eagerly, the collective warns of its overhead.
    @tf.function(autograph=False)
    def gather():
        return strategy.run(lambda: tf.constant(part, tf.int32))

    total, chief_replicas = strategy.reduce(
        tf.distribute.ReduceOp.SUM, gather(), axis=None).numpy().tolist()
    return total // chief_replicas


# How TensorFlow reports a worker it lost: its coordination service
# lists the tasks that stopped sending heartbeats; its older health check
# says one is down; a collective that was receiving from it names it as
# the remote target whose socket closed (which comes first is a race).
# (A chief lost takes the coordination service with it: the others then
# learn it from a closed socket, or only that their collective was
# aborted.) A worker started again before it was found lost comes back as
# another "incarnation", which the service refuses: AbortedError, not
# UnavailableError.
_LOST_TASK = re.compile(
    r"unhealthy[^\n]*\n/job:(\w+)/replica:\d+/task:(\d+)|"
    r"/job:(\w+)/replica:\d+/task:(\d+) is down|"
    r"Socket closed\s+Additional GRPC error information from remote "
    r"target /job:(\w+)/replica:\d+/task:(\d+)")
_RESTARTED_TASK = re.compile(
    r"/job:(\w+)/replica:\d+/task:(\d+) unexpectedly tried to connect "
    "with a different incarnation")
_COLLECTIVE_ABORTED = ("Collective ops is aborted",
                       "tasks are unhealthy (stopped sending heartbeats)",
                       "cluster check alive failed")


@contextlib.contextmanager
def worker_loss_named(strategy):
    """Under a multi-worker strategy, a worker that stops (killed,
    preempted, failed) or is started again alone makes the collectives of
    every other raise UnavailableError or AbortedError, a long trace; here
    it is a RunError that says so, names the worker where TensorFlow does,
    and says how to resume. Elsewhere, and for such an error of anything
    but the collectives (a network file system, say), it does nothing.

    Example:

    ```python
    with worker_loss_named(strategy):
        model.fit(train_ds)
    ```
    """
    if not is_multi_worker(strategy):
        yield
        return
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as e:
        line = _worker_loss(e.message or "",
                            aborted=isinstance(e, tf.errors.AbortedError))
        if line is None:
            raise
        raise RunError(line) from e


def _worker_loss(message, aborted=False):
    """The one line for a collective aborted with `message`, or None when
    it is not about a worker of the run (`aborted`, an AbortedError: only
    a restarted worker is; any other is left as it is)."""
    if not any(mark in message for mark in _COLLECTIVE_ABORTED):
        return None
    restarted = _RESTARTED_TASK.search(message)
    if aborted and not restarted:
        return None
    if restarted:
        return (f"Worker {restarted.group(2)} ({restarted.group(1)}) of "
                "this run was started again while the others were still "
                "training with its earlier process; a cluster cannot take "
                "a worker back in the middle of a run. Every finished trial "
                "and the last checkpoint are kept: stop every worker of "
                "this run, then start the same command on every worker "
                "again to resume.")
    lost = _LOST_TASK.search(message)
    who = ("Worker {1} ({0}) of this run".format(
        *[g for g in lost.groups() if g is not None]) if lost
        else "Another worker of this run")
    return (f"{who} stopped (killed, preempted or failed: its log says "
            "why), and this one cannot go on alone. Every finished trial "
            "and the last checkpoint are kept: once that worker's fault "
            "is dealt with, start the same command on every worker again "
            "to resume.")
