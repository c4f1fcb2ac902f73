import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from bam_tf.data import pipeline
from bam_tf.data.batching import Batching
from bam_tf.model.bam_model import BamModel
from bam_tf.model.optimization import build_optimizer
from bam_tf.model.schedule import TrainSchedule
from bam_tf.tasks import get_task

from conftest import fake_features
from conftest import tiny_backbone

TASKS = [get_task("rte"), get_task("sts")]
SPECS = [t.head_spec for t in TASKS]


def _dataset(batch_size=8, seed=0):
    features = [fake_features(t, 16) for t in TASKS]
    ds, _ = pipeline.train_dataset(TASKS, features, batch_size, seed,
                                   batching=Batching("max_length", 12))
    return ds


def _model(seed=0):
    model = BamModel(tiny_backbone(vocabulary_size=60, seed=seed), SPECS)
    model(next(iter(_dataset())))
    return model


def _schedule(total_steps=20, **kwargs):
    return TrainSchedule(total_steps=total_steps, global_batch_size=8,
                         **kwargs)


def test_outputs_and_named_heads():
    model = _model()
    out = model(next(iter(_dataset())))
    assert out["rte"].shape == (8, 2) and out["sts"].shape == (8,)
    assert np.all((out["sts"].numpy() > 0) & (out["sts"].numpy() < 1))
    names = {layer.name for layer in model.layers}
    assert {"rte_head", "sts_head", "rte_dropout", "sts_dropout"} <= names


def test_config_json_round_trip_and_save_load(tmp_path):
    model = _model()
    model.compile(optimizer="sgd", schedule=_schedule(
        distill=True, distill_temperature=2.0, loss_weights=[1.0, 3.0]))
    config = json.loads(json.dumps(model.get_config()))
    # The architecture alone: the schedule is the train step's.
    assert {"backbone", "task_specs", "dropout_rate"} <= set(config)
    assert not set(config) & {"total_steps", "distill", "loss_weights",
                              "global_batch_size", "micro_batch_size"}
    clone = BamModel.from_config(config)
    assert clone.get_config() == model.get_config()
    # A config saved when the model carried its schedule still loads.
    legacy = BamModel.from_config(dict(config, total_steps=1, distill=False,
                                       distill_temperature=1.0))
    assert legacy.get_config() == model.get_config()
    batch = next(iter(_dataset()))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for name in ("rte", "sts"):
        np.testing.assert_allclose(loaded(batch)[name], model(batch)[name],
                                   atol=1e-6)


def test_fit_lowers_the_loss_and_logs_lambda():
    model = _model()
    ds = _dataset()
    model.compile(optimizer=build_optimizer(model, model.backbone, 3e-3, 40,
                                            lr_decay=0.9),
                  schedule=_schedule(total_steps=40, distill=True))
    history = model.fit(ds, epochs=4, steps_per_epoch=10, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0], losses
    assert set(history.history) >= {"loss_rte", "loss_sts", "lambda",
                                    "learning_rate"}
    # Annealing: lambda is step / total_steps at the last logged step.
    assert history.history["lambda"][-1] == pytest.approx(39 / 40)


def test_loss_weights_weigh_the_logged_loss():
    model = _model()
    model.compile(optimizer=build_optimizer(model, model.backbone, 1e-3, 20),
                  schedule=_schedule(loss_weights=[1.0, 3.0]))
    batch = next(iter(_dataset()))
    logs = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0,
                          return_dict=True)
    # loss is the mean over the batch of each example's weighted loss;
    # loss_rte / loss_sts are the unweighted means over their examples.
    n_sts = float(np.sum(batch["task_id"].numpy() == 1))
    n = len(batch["task_id"])
    assert 0 < n_sts < n
    expected = ((n - n_sts) * logs["loss_rte"] + 3.0 * n_sts
                * logs["loss_sts"]) / n
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="1 loss weights for 2 tasks"):
        model.compile(optimizer="sgd", schedule=_schedule(loss_weights=[2.0]))


def _step_model(policy=None):
    return BamModel(tiny_backbone(vocabulary_size=60, seed=3, dropout=0.0,
                                  dtype=policy), SPECS, dropout_rate=0.0,
                    dtype=policy)


def _one_step(strategy, batch, micro_batch_size=None, distill=False,
              sgd=False, static_batch=True, policy=None):
    with strategy.scope():
        model = _step_model(policy)
        model(batch)
        # SGD's update is the gradient times the rate, so a wrongly scaled
        # gradient shows (Adam divides the scale away).
        model.compile(optimizer=keras.optimizers.SGD(0.5) if sgd else
                      build_optimizer(model, model.backbone, 1e-3, 10,
                                      warmup_proportion=0.0, lr_decay=0.9),
                      schedule=_schedule(10, distill=distill,
                                         micro_batch_size=micro_batch_size))
    ds = tf.data.Dataset.from_tensors(batch)
    if not static_batch:  # as length buckets make it: batch size unknown
        ds = ds.unbatch().batch(len(batch["task_id"]))
    history = model.fit(ds.repeat(), epochs=1, steps_per_epoch=2,
                        verbose=0)
    return ({k: v[-1] for k, v in history.history.items()},
            [v.numpy() for v in model.weights])


def _assert_same_step(a, b):
    (logs_a, weights_a), (logs_b, weights_b) = a, b
    assert sorted(logs_a) == sorted(logs_b)
    for key in logs_a:
        assert logs_b[key] == pytest.approx(logs_a[key], abs=1e-5), key
    for x, y in zip(weights_a, weights_b):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_mirrored_two_replicas_match_one_device(mirrored):
    batch = next(iter(_dataset()))
    _assert_same_step(_one_step(tf.distribute.get_strategy(), batch),
                      _one_step(mirrored, batch))


@pytest.mark.parametrize("micro_batch_size, static_batch", [
    (4, True), (1, True), (2, False)])
def test_micro_batches_make_the_same_update(micro_batch_size, static_batch):
    # 8 examples as 2 x 4, 8 x 1 and 4 x 2 (batch size unknown until run):
    # the same two updates, losses (overall and per task) and lambda as
    # one batch of 8, teacher targets mixed in.
    batch = _distill_batch()
    one = tf.distribute.get_strategy()
    for sgd in (True, False):
        _assert_same_step(
            _one_step(one, batch, distill=True, sgd=sgd),
            _one_step(one, batch, micro_batch_size, distill=True, sgd=sgd,
                      static_batch=static_batch))


def test_micro_batches_under_float16_loss_scaling_make_the_same_update():
    # Each micro-batch's loss is scaled and the summed gradients unscaled
    # once by the LossScaleOptimizer: a micro-batch left unscaled, or
    # unscaled twice, moves SGD's weights 2^15 times too little or much,
    # and a step skipped for overflow moves them half as far.
    batch = _distill_batch()
    one = tf.distribute.get_strategy()
    untrained = _step_model()  # _one_step's model, unfitted
    untrained(batch)
    initial = [v.numpy() for v in untrained.weights]
    reference = _one_step(one, batch, distill=True, sgd=True)
    assert [x.shape for x in initial] == [x.shape for x in reference[1]]
    moved = max(np.abs(x - before).max()
                for before, x in zip(initial, reference[1]))
    assert moved > 5e-3  # well above the tolerance below
    for size in (None, 4):
        logs, weights = _one_step(one, batch, size, distill=True, sgd=True,
                                  policy="mixed_float16")
        for key in reference[0]:  # float16 activations: not 1e-5
            assert logs[key] == pytest.approx(reference[0][key],
                                              rel=1e-3), key
        for x, y in zip(reference[1], weights):
            np.testing.assert_allclose(y, x, atol=5e-4)


def test_micro_batches_under_mirrored_match_one_device(mirrored):
    batch = next(iter(_dataset()))
    # Each replica's 4 examples as 2 micro-batches of 2.
    _assert_same_step(_one_step(tf.distribute.get_strategy(), batch),
                      _one_step(mirrored, batch, micro_batch_size=2))


def test_micro_batch_size_must_divide_the_replica_batch():
    batch = next(iter(_dataset()))
    message = ("micro_batch_size 3 must divide the training batch of every "
               "replica")
    with pytest.raises(ValueError, match=message + ".*; got 8 examples"):
        _one_step(tf.distribute.get_strategy(), batch, micro_batch_size=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _one_step(tf.distribute.get_strategy(), batch, micro_batch_size=3,
                  static_batch=False)
    with pytest.raises(ValueError, match="must be positive"):
        _schedule(micro_batch_size=0)


def _distill_batch():
    batch = dict(next(iter(_dataset())))
    rng = np.random.default_rng(0)
    n, slots = batch["teacher_logits"].shape
    batch["teacher_logits"] = tf.constant(
        rng.normal(size=(n, slots)), tf.float32)
    batch["teacher_prediction"] = tf.constant(rng.uniform(size=n),
                                              tf.float32)
    batch["has_teacher"] = tf.constant(np.arange(n) % 4 != 3, tf.float32)
    return batch


def _fit_with_policy(policy):
    model = BamModel(tiny_backbone(vocabulary_size=60, seed=0, dropout=0.0,
                                   dtype=policy), SPECS, dropout_rate=0.0,
                     dtype=policy)
    model(next(iter(_dataset())))
    model.compile(optimizer=build_optimizer(model, model.backbone, 1e-3, 10),
                  schedule=_schedule(10))
    history = model.fit(_dataset(), epochs=1, steps_per_epoch=6, verbose=0)
    return model, history.history


@pytest.mark.parametrize("policy, rtol", [("mixed_bfloat16", 1e-3),
                                          ("mixed_float16", 1e-4)])
def test_mixed_precision_trains_as_float32_does(policy, rtol):
    model, logs = _fit_with_policy(policy)
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.heads["rte"].dtype_policy.name == policy
    assert model.backbone.dtype_policy.name == policy
    out = model(next(iter(_dataset())))
    assert out["rte"].dtype == tf.float32
    # The same initial weights and batches as float32 (dropout off): the
    # mean losses of the six steps agree to the lower precision's rounding.
    _, reference = _fit_with_policy(None)
    for key in ("loss", "loss_rte", "loss_sts"):
        np.testing.assert_allclose(logs[key], reference[key], rtol=rtol,
                                   err_msg=key)


def test_bucketed_eval_predicts_as_in_order_eval():
    model = _model()
    features = fake_features(TASKS[0], 13, length=4)
    features.lengths[[2, 7]] = 9  # longer rows land in another bucket
    features.token_ids = np.resize(features.token_ids,
                                   int(features.lengths.sum()))
    features.segment_ids = np.zeros_like(features.token_ids)
    results = []
    for batching in (Batching("longest"),
                     Batching("buckets", 16, smallest_bucket=8)):  # 8, 16
        ds = pipeline.eval_dataset(TASKS[0], 0, features, 4, 2, batching)
        out = model.predict(ds, verbose=0)
        order = np.argsort(out["eid"])
        results.append((out["eid"][order], out["outputs"]["rte"][order]))
    np.testing.assert_array_equal(results[0][0], np.arange(13))
    np.testing.assert_array_equal(results[1][0], np.arange(13))
    np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-5)
