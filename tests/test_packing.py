"""Packed batches (`bam_tf.data.packing`): the layout by hand, static row
counts, and, for every encoder family, packed training and prediction
against one example per padded row (dropout off: masks are drawn per
layout)."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from bam_tf.data import packing
from bam_tf.data import pipeline
from bam_tf.data.batching import Batching
from bam_tf.encoders.families import FAMILIES
from bam_tf.encoders.packed import attention_mask
from bam_tf.experiment.evaluation import predict_split
from bam_tf.model.bam_model import BamModel
from bam_tf.model.optimization import build_optimizer
from bam_tf.model.schedule import TrainSchedule
from bam_tf.tasks import get_task

from conftest import SIZES
from conftest import fake_features
from conftest import tiny_encoder

TASKS = [get_task("rte"), get_task("sts")]
SPECS = [t.head_spec for t in TASKS]


def _batch(lengths, pair_at=None):
    """A padded batch: example i has lengths[i] tokens 10 * (i + 1) + j;
    its second text (segment 1) starts at pair_at[i] where given."""
    longest = max(lengths)
    ids = np.zeros([len(lengths), longest], np.int32)
    segments = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = 10 * (i + 1) + np.arange(n)
        mask[i, :n] = 1
        if pair_at and pair_at[i] is not None:
            segments[i, pair_at[i]:n] = 1
    return {"token_ids": tf.constant(ids), "segment_ids": tf.constant(segments),
            "padding_mask": tf.constant(mask),
            "eid": tf.range(len(lengths)),
            "label": tf.constant(np.arange(len(lengths)) % 2, tf.int32)}


def test_layout_by_hand():
    # Lengths 3, 6, 2, 4 in rows of 8, longest first: 6 opens row 0, 4
    # opens row 1, 3 joins row 1 (4 + 3 <= 8), 2 joins row 0 (6 + 2).
    # Example 2's text pair keeps its segment ids where it lands.
    packed = packing.pack_batch(_batch([3, 6, 2, 4], [None, None, 1, None]),
                                row_lengths=(8,))
    assert packed["token_ids"].numpy().tolist() == [[
        [20, 21, 22, 23, 24, 25, 30, 31],
        [40, 41, 42, 43, 10, 11, 12, 0]]]
    assert packed["segment_ids"].numpy().tolist() == [[
        [0, 0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0]]]
    assert packed["positions"].numpy().tolist() == [[
        [0, 1, 2, 3, 4, 5, 0, 1], [0, 1, 2, 3, 0, 1, 2, 0]]]
    # Row 1 ends in an empty slot (id 0): nothing sees it.
    assert packed["packing_ids"].numpy().tolist() == [[
        [2, 2, 2, 2, 2, 2, 3, 3], [4, 4, 4, 4, 1, 1, 1, 0]]]
    assert packed["cls_index"].numpy().tolist() == [[12, 0, 6, 8]]
    # Per-example keys keep the batch's order.
    assert packed["eid"].numpy().tolist() == [[0, 1, 2, 3]]
    mask = attention_mask(packed["packing_ids"][0]).numpy()
    assert mask[0, 6].tolist() == [False] * 6 + [True] * 2
    assert not mask[1, :, 7].any()


def test_a_row_length_is_chosen_and_a_long_example_fills_a_row_alone():
    # 8 tokens fill a row of 8 alone; the three of 2 share the next. Rows
    # of 16 would hold all in one (16 tokens computed, not 16): a tie, the
    # shorter rows win.
    packed = packing.pack_batch(_batch([2, 8, 2, 2]), row_lengths=(8, 16))
    assert packed["token_ids"].shape == (1, 2, 8)
    assert packed["packing_ids"].numpy()[0, 0].tolist() == [2] * 8
    assert packed["packing_ids"].numpy()[0, 1].tolist() == [
        1, 1, 3, 3, 4, 4, 0, 0]
    # 9 tokens cannot go in rows of 8.
    packed = packing.pack_batch(_batch([9, 2]), row_lengths=(8, 16))
    assert packed["token_ids"].shape == (1, 1, 16)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="longer than the packed rows"):
        packing.pack_batch(_batch([9, 2]), row_lengths=(8,))


def test_groups_are_packed_apart():
    # Two groups of two examples each: each group's rows hold its own
    # examples, the shape is the fuller group's.
    packed = packing.pack_batch(_batch([5, 5, 2, 2]), row_lengths=(8,),
                                groups=2)
    assert packed["token_ids"].shape == (2, 2, 8)
    assert packed["eid"].numpy().tolist() == [[0, 1], [2, 3]]
    assert packed["packing_ids"].numpy()[1].tolist() == [
        [1, 1, 2, 2, 0, 0, 0, 0], [0] * 8]
    merged = packing.merge_groups(packed)
    assert merged["token_ids"].shape == (4, 8)
    # Group 1's first example starts in merged row 2.
    assert merged["cls_index"].numpy().tolist() == [0, 8, 16, 18]
    np.testing.assert_array_equal(
        tf.gather(tf.reshape(merged["token_ids"], [-1]),
                  merged["cls_index"]), [10, 20, 30, 40])


def test_static_row_counts_hold_every_batch():
    # Every drawn batch is 8 examples of 3 tokens: two to a row of 8, 4
    # rows; then doubling up to 8 rows, one example each, which holds
    # any batch.
    counts = packing.static_row_counts([np.full(50, 3)], [1.0], 8, 1, 8)
    assert counts == (4, 8)
    # A batch of long examples takes the larger count, nothing dropped.
    packed = packing.pack_batch(_batch([8] * 5 + [3] * 3), (8,),
                                row_counts=counts)
    assert packed["token_ids"].shape[1] == 8
    ids = packed["packing_ids"].numpy()
    assert sorted(set(ids.ravel()) - {0}) == list(range(1, 9))
    small = packing.pack_batch(_batch([3] * 8), (8,), row_counts=counts)
    assert small["token_ids"].shape[1] == 4


def test_batching_of_a_configuration():
    lengths = [fake_features(TASKS[0], 12).lengths]
    assert Batching("packed", 64).packed_layout(
        lengths, [1.0], 4).row_lengths == (16, 32, 64)
    static = Batching("packed", 64, static=True).packed_layout(
        lengths, [1.0], 4, groups=2)
    assert static.row_lengths == (64,) and static.groups == 2
    assert static.row_counts[-1] == 2
    with pytest.raises(ValueError, match="no static shapes"):
        Batching("longest", 64, static=True)


# ----------------------------------------------- every family, end to end
def _family_backbone(name, dtype=None):
    backbone, _ = tiny_encoder(name)
    config = {**backbone.get_config(), "dropout": 0.0}
    if dtype:
        config["dtype"] = dtype
    keras.utils.set_random_seed(7)
    return type(backbone).from_config(config)


def _features(task, n, vocabulary_size, seed):
    """Examples of 3..20 tokens (pairs with a segment 1 half), ids within
    the vocabulary."""
    rng = np.random.default_rng(seed)
    features = fake_features(task, n)
    lengths = rng.integers(3, 21, n).astype(np.int32)
    total = int(lengths.sum())
    segments = np.concatenate([
        (np.arange(k) >= k // 2).astype(np.int32) for k in lengths])
    return features.__class__(
        task=task.name, split="train", eids=features.eids,
        labels=features.labels,
        token_ids=rng.integers(5, vocabulary_size, total).astype(np.int32),
        segment_ids=segments, lengths=lengths, full_lengths=lengths)


def _stream(features, batching, batch, groups=1):
    rng = np.random.default_rng(0)
    teachers = {"rte": rng.normal(size=(len(features[0]), 2)).astype(
        np.float32), "sts": rng.uniform(size=len(features[1])).astype(
            np.float32)}
    return pipeline.train_dataset(
        TASKS, features, batch, seed=3, teachers=teachers,
        batching=batching, groups=groups)[0]


def _three_steps(make_backbone, features, batching, batch=8, groups=1,
                 policy=None, jit_compile=False, micro_batch_size=None):
    """(losses, weights after three steps, model) of a dropout-free
    student with distillation, from the same weights on the same
    batches."""
    keras.utils.set_random_seed(0)
    model = BamModel(make_backbone(policy), SPECS, dropout_rate=0.0,
                     dtype=policy)
    ds = _stream(features, batching, batch, groups)
    model(next(iter(ds)))
    model.compile(
        optimizer=build_optimizer(model, model.backbone, 1e-3, 6,
                                  warmup_proportion=0.0, lr_decay=0.9,
                                  jit_update=False),
        schedule=TrainSchedule(total_steps=6, distill=True,
                               global_batch_size=batch,
                               micro_batch_size=micro_batch_size),
        jit_compile=jit_compile)
    history = model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)
    # Paths without the model's own (numbered) name.
    return history.history, {v.path.split("/", 1)[1]: v.numpy()
                             for v in model.weights}, model


def _assert_same_training(a, b, loss_rtol=1e-5, weight_atol=1e-5):
    (logs_a, weights_a, _), (logs_b, weights_b, _) = a, b
    assert {"loss", "loss_rte", "loss_sts"} <= set(logs_a)
    for key in ("loss", "loss_rte", "loss_sts"):
        np.testing.assert_allclose(logs_a[key], logs_b[key], rtol=loss_rtol,
                                   err_msg=key)
    assert sorted(weights_a) == sorted(weights_b)
    for path in weights_a:
        np.testing.assert_allclose(weights_a[path], weights_b[path],
                                   atol=weight_atol, err_msg=path)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_trains_and_predicts_packed_as_padded(family):
    vocabulary = _family_backbone(family).token_embedding.input_dim
    features = [_features(t, 24, vocabulary, i) for i, t in enumerate(TASKS)]
    make = lambda policy: _family_backbone(family, policy)
    padded = _three_steps(make, features, Batching("longest", 32))
    packed = _three_steps(make, features, Batching("packed", 32))
    _assert_same_training(packed, padded)
    # The trained model predicts packed as padded, keyed by example id.
    model = packed[2]
    for task_id, task in enumerate(TASKS):
        by_layout = {
            padding: predict_split(model, task, task_id, features[task_id],
                                   Batching(padding, 32), 5, 2)
            for padding in ("longest", "packed")}
        (eids_a, out_a), (eids_b, out_b) = by_layout.values()
        assert sorted(eids_a) == sorted(eids_b) == list(range(24))
        np.testing.assert_allclose(out_b[np.argsort(eids_b)],
                                   out_a[np.argsort(eids_a)], atol=1e-5)


def _bert(policy=None):
    keras.utils.set_random_seed(7)
    return keras_hub.models.BertBackbone(
        vocabulary_size=60, dropout=0.0, dtype=policy, **SIZES)


@pytest.fixture(scope="module")
def bert_features():
    return [_features(t, 32, 60, i) for i, t in enumerate(TASKS)]


def test_micro_batches_of_packed_groups(bert_features):
    # Batches of 8 as two micro-batches of 4, each packed on its own.
    padded = _three_steps(_bert, bert_features, Batching("longest", 32))
    packed = _three_steps(_bert, bert_features, Batching("packed", 32),
                          groups=2, micro_batch_size=4)
    _assert_same_training(packed, padded)


def test_static_packed_step_compiles_under_xla(bert_features):
    batching = Batching("packed", 32, static=True)
    spec = _stream(bert_features, batching, 8).element_spec
    assert spec["token_ids"].shape[2] == 32 and spec["label"].shape == (1, 8)
    padded = _three_steps(_bert, bert_features, Batching("longest", 32))
    compiled = _three_steps(_bert, bert_features, batching,
                            jit_compile=True)
    # XLA reorders float32 sums only.
    _assert_same_training(compiled, padded, weight_atol=1e-4)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_packed(bert_features, policy):
    padded = _three_steps(_bert, bert_features, Batching("longest", 32),
                          policy=policy)
    packed = _three_steps(_bert, bert_features, Batching("packed", 32),
                          policy=policy)
    # Half-precision activations round differently in rows of another
    # length (other matrix-product tilings).
    _assert_same_training(packed, padded, loss_rtol=1e-2, weight_atol=2e-3)
