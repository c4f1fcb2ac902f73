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


@contextlib.contextmanager
def together(strategy, what):
    """The workers of a multi-worker run leave this block together: each
    waits for all the others, and an error in one is raised in every one
    (the others name `what`, the step that failed elsewhere). Elsewhere
    it does nothing.

    A barrier, so that what one worker does in the block (the chief
    opening, perhaps overwriting, the model folder) is done before another
    goes on (reading which trials are finished: each must train the
    same ones, or the collectives of the first trial wait forever).

    Example:

    ```python
    with together(strategy, "opening the model folder"):
        if is_chief(strategy):
            open_model_dir(config, overwrite=True)
    ```
    """
    if not is_multi_worker(strategy):
        yield
        return
    try:
        yield
    except Exception:
        _count_failed(strategy, True)
        raise
    if _count_failed(strategy, False):
        raise RunError(
            f"Another worker of this run failed in {what} (its log says "
            "why); this one stops too.")


def _count_failed(strategy, failed):
    """How many replicas' workers failed: an all-reduce every worker joins,
    so none returns before all have come. A worker that has died makes it
    raise (UnavailableError) instead of waiting."""

    # tf.function: run eagerly, the collective warns of its overhead.
    @tf.function(autograph=False)
    def count():
        return strategy.run(lambda: tf.constant(float(failed)))

    return int(strategy.reduce(tf.distribute.ReduceOp.SUM, count(),
                               axis=None))


# How TensorFlow's coordination service names a worker it lost.
_LOST_TASK = re.compile(r"unhealthy[^\n]*\n/job:(\w+)/replica:\d+/task:(\d+)")


@contextlib.contextmanager
def worker_loss_named(strategy):
    """Under a multi-worker strategy, a worker that stops (killed,
    preempted, failed) makes the collectives of every other raise
    UnavailableError, a long trace; here it is a RunError that names the
    lost worker and says how to resume. Elsewhere it does nothing.

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
    except tf.errors.UnavailableError as e:
        lost = _LOST_TASK.search(e.message or "")
        who = (f"Worker {lost.group(2)} ({lost.group(1)}) of this run"
               if lost else "Another worker of this run")
        raise RunError(
            f"{who} stopped (killed, preempted or failed: its log says "
            "why), and this one cannot go on alone. Every finished trial "
            "and the last checkpoint are kept: start the same command on "
            "every worker again to resume.") from e
