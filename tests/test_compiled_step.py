"""The faster ways to run a training step compute what the plain step
computes: `--jit_compile` (the whole step under XLA) and the compiled
optimizer update (`jit_update`, on by default), for every padding mode, on a tiny model trained three steps
from the same weights on the same batches. Dropout is off: XLA draws its
own random bits, so with dropout the compiled step trains with other
masks (docs/benchmarks.md)."""

import numpy as np
import pytest

from bam_tf.data import pipeline
from bam_tf.data.batching import Batching
from bam_tf.tasks import get_task

from conftest import fake_features
from conftest import train_three_steps

TASKS = [get_task("rte"), get_task("sts")]
BATCH, LENGTH = 8, 16
PADDINGS = {"max_length": Batching("max_length", LENGTH),
            "buckets": Batching("buckets", LENGTH, smallest_bucket=8),
            "longest": Batching("longest")}


def _stream(padding):
    features = [fake_features(t, 24) for t in TASKS]
    ds, _ = pipeline.train_dataset(TASKS, features, BATCH, seed=3,
                                   batching=PADDINGS[padding])
    return ds


def _train(padding, jit_compile, jit_update):
    return train_three_steps(lambda: _stream(padding),
                             [t.head_spec for t in TASKS], jit_compile,
                             jit_update, global_batch_size=BATCH)


_PLAIN = {}  # padding: the plain step's run, computed once


# The faster steps as trial.py builds them: the update compiled, the
# whole step with --jit_compile.
@pytest.mark.parametrize("padding, jit_compile, jit_update", [
    ("max_length", False, True), ("buckets", False, True),
    ("longest", False, True),
    ("max_length", True, True), ("buckets", True, True),
    ("longest", True, False)])
def test_faster_steps_train_as_the_plain_step(padding, jit_compile,
                                              jit_update):
    if padding not in _PLAIN:
        _PLAIN[padding] = _train(padding, False, False)
    plain_logs, plain_moved = _PLAIN[padding]
    logs, moved = _train(padding, jit_compile, jit_update)
    assert {"loss", "loss_rte", "loss_sts"} <= set(plain_logs)
    for key in plain_logs:
        np.testing.assert_allclose(logs[key], plain_logs[key], rtol=1e-5,
                                   err_msg=key)
    size = np.linalg.norm(plain_moved)
    assert size > 1e-2  # three updates moved the weights
    # XLA reorders float32 sums only.
    assert np.linalg.norm(moved - plain_moved) < 1e-4 * size
