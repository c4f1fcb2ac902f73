"""A tf.distribute strategy from its name (scripts choose; the library only
receives the strategy)."""

import tensorflow as tf

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
