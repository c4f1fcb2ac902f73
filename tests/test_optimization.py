import numpy as np
import pytest
import tensorflow as tf

from bam_tf.model.bam_model import BamModel
from bam_tf.model.optimization import WarmupLinearDecay
from bam_tf.model.optimization import build_optimizer
from bam_tf.model.optimization import layer_depth
from bam_tf.tasks import HeadSpec

from conftest import tiny_backbone


def test_schedule_by_hand():
    schedule = WarmupLinearDecay(1e-4, total_steps=100, warmup_steps=10)
    for step, expected in [(0, 0.0), (5, 5e-5), (10, 1e-4), (55, 5e-5),
                           (100, 0.0), (120, 0.0)]:
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)
    assert WarmupLinearDecay(**schedule.get_config()).get_config() == \
        schedule.get_config()


@pytest.fixture(scope="module")
def model_and_backbone():
    backbone = tiny_backbone(layers=3)
    model = BamModel(backbone, [HeadSpec("rte", 2, False)])
    model({"token_ids": tf.ones([2, 4], tf.int32),
           "segment_ids": tf.zeros([2, 4], tf.int32),
           "padding_mask": tf.ones([2, 4], tf.int32)})
    return model, backbone


def _var(model, path):
    [v] = [v for v in model.trainable_variables if v.path == path]
    return v


# L = 3: head 0, pooler 1, layer i at L + 1 - i, embeddings L + 2.
DEPTHS = {
    "token_embedding/embeddings": 5,
    "embeddings_layer_norm/gamma": 5,
    "transformer_layer_0/feedforward_output_dense/kernel": 4,
    "transformer_layer_1/self_attention_layer/query/kernel": 3,
    "transformer_layer_2/feedforward_layer_norm/beta": 2,
    "pooled_dense/kernel": 1,
    "HEAD": 0,  # the head's path starts with the model's (unique) name
}


def _path(model, path):
    return f"{model.name}/rte_head/kernel" if path == "HEAD" else path


def test_depths_from_backbone_structure(model_and_backbone):
    model, backbone = model_and_backbone
    paths = {v.path for v in backbone.trainable_variables}
    for path, depth in DEPTHS.items():
        path = _path(model, path)
        _var(model, path)  # exists
        assert layer_depth(path, backbone, paths) == depth, path


@pytest.mark.parametrize("path", [
    "token_embedding/embeddings",
    "transformer_layer_1/self_attention_layer/query/kernel",
    "pooled_dense/kernel",
    "HEAD",
])
def test_exact_learning_rate_of_one_update(model_and_backbone, path):
    """The update of Adam's 5th step (step 4, fresh moments) on one variable
    equals Keras Adam's lr(4) * 0.8^depth * sqrt(1 - b2^t) / (1 - b1^t) *
    m / (sqrt(v) + eps), with t = 5, by hand: the multiplier scales the
    update, which scaling the gradient would not (Adam cancels it)."""
    model, backbone = model_and_backbone
    optimizer = build_optimizer(model, backbone, learning_rate=1e-3,
                                total_steps=100, warmup_proportion=0.1,
                                weight_decay_rate=0.0, lr_decay=0.8,
                                clip_norm=1e9)
    optimizer.build(model.trainable_variables)
    optimizer.iterations.assign(4)
    variable = _var(model, _path(model, path))
    before = variable.numpy().copy()
    gradient = np.full(variable.shape, 0.01, np.float32)
    grads = [tf.constant(gradient) if v is variable else tf.zeros_like(v)
             for v in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)
    lr = 1e-3 * 4 / 10 * 0.8 ** DEPTHS[path]
    t = 5
    m, v = 0.1 * 0.01, 0.001 * 0.01 ** 2
    alpha = lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
    expected_step = alpha * m / (np.sqrt(v) + 1e-6)
    np.testing.assert_allclose(before - variable.numpy(), expected_step,
                               rtol=1e-3)
    variable.assign(before)


def test_weight_decay_skips_layer_norm_and_bias(model_and_backbone):
    model, backbone = model_and_backbone
    optimizer = build_optimizer(model, backbone, learning_rate=1e-3,
                                total_steps=10, warmup_proportion=0.0,
                                weight_decay_rate=0.01, lr_decay=1.0)
    optimizer.build(model.trainable_variables)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    optimizer.apply([tf.zeros_like(v) for v in model.trainable_variables],
                    model.trainable_variables)
    for v in model.trainable_variables:
        name = v.path.split("/")[-1]
        if name in ("gamma", "beta", "bias"):
            np.testing.assert_array_equal(v.numpy(), before[v.path])
        else:  # lr at step 0 of a no-warm-up schedule is the peak
            np.testing.assert_allclose(
                v.numpy(), before[v.path] * (1 - 1e-3 * 0.01), rtol=1e-6)
        v.assign(before[v.path])
    decayed = [v.path for v in model.trainable_variables
               if "layer_norm" in v.path and optimizer._decays[
                   optimizer._get_variable_index(v)]]
    assert decayed == []


def _plain_and_compiled(model, backbone, batches, in_function=False):
    """([the variables after the plain update of each of `batches`], the
    same after the compiled update, the compiled optimizer), from the same
    start; the variables are put back after."""
    variables = model.trainable_variables
    start = [v.numpy() for v in variables]
    finals = []
    for jit in (False, True):
        for v, value in zip(variables, start):
            v.assign(value)
        optimizer = build_optimizer(model, backbone, learning_rate=1e-2,
                                    total_steps=10, lr_decay=0.8)
        optimizer.jit_update = jit
        optimizer.build(variables)
        step = lambda g: optimizer.apply(g, variables)
        step = tf.function(step) if in_function else step
        for g in batches:
            step(g)
        assert (optimizer._jit_apply is not None) == jit
        finals.append([v.numpy() for v in variables])
    for v, value in zip(variables, start):
        v.assign(value)
    return finals[0], finals[1], optimizer


def test_compiled_update_equals_the_plain_one(model_and_backbone):
    """jit_update (XLA) changes speed, not the update: three steps with
    clipping, decay and layer-wise rates agree with the plain update."""
    model, backbone = model_and_backbone
    variables = model.trainable_variables
    start = [v.numpy() for v in variables]
    rng = np.random.default_rng(0)
    grads = [[tf.constant(rng.normal(size=v.shape).astype("float32"))
              for v in variables] for _ in range(3)]
    plain, compiled, _ = _plain_and_compiled(model, backbone, grads,
                                             in_function=True)
    for a, b, s in zip(plain, compiled, start):
        assert not np.allclose(a, s)  # the update did something
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_compiled_update_compiles_once_for_any_token_count(
        model_and_backbone):
    """An embedding's gradient has a row per token of the batch; batches
    of other token counts (packed rows, each batch padded to its longest)
    reuse the compiled update of their power of two (7, 12 and 30 rows:
    64; 100: 128), and it equals the plain update on the same sparse
    gradients (repeated rows as Keras takes them)."""
    model, backbone = model_and_backbone
    variables = model.trainable_variables
    [table] = [v for v in variables
               if v.path == "token_embedding/embeddings"]
    index = next(i for i, v in enumerate(variables) if v is table)
    rng = np.random.default_rng(1)

    def grads(tokens):
        out = [tf.constant(rng.normal(size=v.shape).astype("float32"))
               for v in variables]
        out[index] = tf.IndexedSlices(
            tf.constant(rng.normal(size=(tokens, table.shape[1]))
                        .astype("float32")),
            tf.constant(rng.integers(0, table.shape[0], tokens), tf.int64),
            tf.constant(table.shape, tf.int64))
        return out
    batches = [grads(n) for n in (7, 12, 12, 30, 100)]  # repeated rows
    plain, compiled, optimizer = _plain_and_compiled(model, backbone,
                                                     batches)
    # One trace per padded size met: 64 rows, then 128.
    assert optimizer._jit_apply[1].experimental_get_tracing_count() == 2
    for a, b in zip(plain, compiled):
        np.testing.assert_allclose(a, b, atol=1e-6)
