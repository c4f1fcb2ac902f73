"""What a TPU needs, proven on the CPU (no TPU here): with
`--padding=max_length` every training input has a static shape, and the
whole training step as `--strategy=tpu` builds it (distillation,
micro-batches, bfloat16) compiles under XLA and gives the losses and
weights of the uncompiled step."""

import numpy as np
import pytest

from bam_tf.data import pipeline
from bam_tf.data.batching import Batching
from bam_tf.tasks import get_task

from conftest import fake_features
from conftest import train_three_steps

TASKS = [get_task("rte"), get_task("sts")]
SPECS = [t.head_spec for t in TASKS]
LENGTH, BATCH = 16, 8


def _stream():
    features = [fake_features(t, 24) for t in TASKS]
    rng = np.random.default_rng(0)
    teachers = {"rte": rng.normal(size=(24, 2)).astype(np.float32),
                "sts": rng.uniform(size=24).astype(np.float32)}
    ds, _ = pipeline.train_dataset(TASKS, features, BATCH, seed=3,
                                   teachers=teachers,
                                   batching=Batching("max_length", LENGTH))
    return ds


def test_max_length_padding_gives_static_shapes():
    for name, spec in _stream().element_spec.items():
        assert spec.shape.is_fully_defined(), (name, spec.shape)
        assert spec.shape[0] == BATCH, name
        if name in ("token_ids", "segment_ids", "padding_mask"):
            assert spec.shape[1] == LENGTH


def _train(jit_compile, policy, micro_batch_size):
    return train_three_steps(_stream, SPECS, jit_compile, policy=policy,
                             distill=True, micro_batch_size=micro_batch_size,
                             global_batch_size=BATCH)


# float32: XLA reorders sums only. bfloat16: activations keep 8 bits of
# mantissa, so XLA's other fusions round differently; the losses still
# agree to 1e-3 and the updates point the same way.
@pytest.mark.parametrize("policy, loss_rtol, update_rtol", [
    (None, 1e-5, 1e-4), ("mixed_bfloat16", 1e-3, 0.1)])
def test_the_whole_step_compiles_under_xla_with_the_same_losses(
        policy, loss_rtol, update_rtol):
    plain_logs, plain_moved = _train(False, policy, 4)
    xla_logs, xla_moved = _train(True, policy, 4)
    assert sorted(plain_logs) == sorted(xla_logs)
    assert {"loss", "loss_rte", "loss_sts", "lambda"} <= set(plain_logs)
    for key in plain_logs:
        np.testing.assert_allclose(xla_logs[key], plain_logs[key],
                                   rtol=loss_rtol, err_msg=key)
    size = np.linalg.norm(plain_moved)
    assert size > 1e-2  # the weights did move
    assert np.linalg.norm(xla_moved - plain_moved) < update_rtol * size
