"""Throughput of bam-tf's training and prediction, and of keras-hub's
`BertTextClassifier.fit` as a baseline on the same encoder, data, batch size
and optimizer; multi-task against single-task training cost; speed and
peak memory with micro-batches; a per-op profile of the training step.
Tracing is excluded from the timings."""

import functools
import multiprocessing
import os
import resource
import time
from unittest import mock

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from bam_tf.config import RunConfig
from bam_tf.data import packing
from bam_tf.data import pipeline
from bam_tf.data.batching import Batching
from bam_tf.data.features import Featurizer
from bam_tf.data.loading import load_split
from bam_tf.encoders.encoder import load_encoder
from bam_tf.model.factory import build_model
from bam_tf.model.factory import compile_for_training
from bam_tf.tasks import get_tasks
from bam_tf_benchmarks import compute


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Timer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start


def _timed_fit(model, dataset, warmup_steps, steps, profile_dir=None):
    """Seconds of `steps` training steps after `warmup_steps` untimed ones;
    the timed steps continue the warm-up's stream (a pure function of its
    seed, so skipping gives the very next batches)."""
    model.fit(dataset, epochs=1, steps_per_epoch=warmup_steps, verbose=0)
    timer = _Timer()
    timed = dataset.skip(warmup_steps).take(steps)
    if profile_dir:
        tf.profiler.experimental.start(profile_dir)
    try:
        model.fit(timed, epochs=1, verbose=0, callbacks=[timer])
    finally:
        if profile_dir:
            tf.profiler.experimental.stop()
    return timer.seconds


def untraced_warmup(lengths, minimum, steps, limit=None):
    """The fewest untimed first steps (at least `minimum`) after which the
    next `steps` batches bring no sequence length not seen before, so that
    no tracing falls into the timed steps. `lengths`: the stream's batch
    lengths, in order. Returns `limit` (default len(lengths) - steps) when
    there is no such number."""
    limit = len(lengths) - steps if limit is None else limit
    for warmup in range(minimum, limit):
        if set(lengths[warmup:warmup + steps]) <= set(lengths[:warmup]):
            return warmup
    return limit


def example_lengths(batch):
    """The real token count of each example of a padded or packed batch
    (packed: per group, counted from its packing ids)."""
    if not packing.is_packed(batch):
        return batch["padding_mask"].sum(1)
    ids = batch["packing_ids"]
    per_group = batch["cls_index"].shape[1]
    return np.concatenate([
        np.bincount(ids[g].ravel(), minlength=per_group + 1)[1:]
        for g in range(ids.shape[0])])


def padding_summary(batches):
    """Computed tokens over real ones in `batches` (padded or packed), as
    laid out and as they would be if each batch were padded to its own
    longest example; `token_efficiency` is real over computed."""
    lengths = [example_lengths(b) for b in batches]
    real = sum(int(n.sum()) for n in lengths)
    computed = sum(b["token_ids"].size for b in batches)
    longest = sum(len(n) * int(n.max()) for n in lengths)
    return {"padded_over_real": computed / real,
            "longest_over_real": longest / real,
            "token_efficiency": real / computed}


def load_inputs(pretrained_model, bam_dir, glue_dir, task_names,
                num_examples, max_seq_length, dtype=None):
    """(tasks, examples, encoder, features): the first `num_examples`
    training examples of each task (unordered pairs not doubled),
    featurized for the encoder."""
    tasks = get_tasks(task_names)
    examples = [load_split(t, "train", glue_dir, max_examples=num_examples,
                           double_unordered=False) for t in tasks]
    encoder = load_encoder(pretrained_model, bam_dir, dtype=dtype)
    featurizer = Featurizer(encoder.tokenizer, max_seq_length)
    return tasks, examples, encoder, [featurizer.featurize(e)
                                      for e in examples]


def bam_tf_throughput(backbone, tasks, features, batch_size, steps,
                      warmup_steps=3, batching=None, learning_rate=5e-5,
                      seed=1, exponent=0.75, predict=True, profile_dir=None,
                      micro_batch_size=None, jit_compile=False,
                      change_model=None):
    """Training (and prediction) throughput of the BAM model.

    `batching` (a `Batching`) lays out the batches, as a run's does
    (default: each batch padded to its longest example). The model is
    built and compiled as a run's (`bam_tf.model.factory`).

    Untimed warm-up steps run until every input shape of the timed steps
    has been traced (at least `warmup_steps`; see `untraced_warmup`).
    With `profile_dir`, the timed steps are also traced by the TensorFlow
    profiler into that folder. `peak_rss_mb` is the process's peak so far.
    `change_model(model)`, called after `compile`, alters the model for a
    diagnostic (`DIAGNOSTIC_VARIANTS`).
    """
    batching = batching or Batching(
        "longest", int(max(f.lengths.max() for f in features)))
    train, _ = pipeline.train_dataset(
        tasks, features, batch_size, seed, exponent, batching=batching)
    # The stream is a function of the seed: its batch shapes and real
    # tokens are known before training.
    batches = list(train.take(4 * steps + warmup_steps).as_numpy_iterator())
    warmup_steps = untraced_warmup(
        [b["token_ids"].shape[1:] for b in batches], warmup_steps, steps,
        limit=3 * steps + warmup_steps)
    timed = batches[warmup_steps:warmup_steps + steps]
    lengths = np.concatenate([example_lengths(b) for b in timed])
    real_tokens = int(lengths.sum())
    # The run configuration the steps are those of (its other settings at
    # their defaults: warm-up, weight decay, clipping; no teachers).
    config = RunConfig(model_name="benchmark", bam_dir=".",
                       task_names=tuple(t.name for t in tasks),
                       pretrained_model=backbone.name,
                       train_batch_size=batch_size,
                       learning_rate=learning_rate, lr_decay=1.0, seed=seed,
                       task_weight_exponent=exponent)
    model = build_model(backbone, [t.head_spec for t in tasks], batches[0])
    compile_for_training(model, config, warmup_steps + steps,
                         micro_batch_size, jit_compile=jit_compile)
    if change_model is not None:
        change_model(model)
    seconds = _timed_fit(model, train, warmup_steps, steps, profile_dir)
    examples = steps * batch_size
    result = {"train_examples_per_s": examples / seconds,
              "train_tokens_per_s": real_tokens / seconds,
              "train_seconds": seconds, "train_steps": steps,
              "train_real_tokens": real_tokens,
              "warmup_steps": warmup_steps, "peak_rss_mb": peak_rss_mb(),
              **padding_summary(timed),
              "train_flops_per_real_token":
                  compute.training_flops_per_real_token(backbone, lengths)}
    if not predict:
        return result

    slots = pipeline.num_label_slots(tasks)
    predict = pipeline.eval_dataset(
        tasks[0], 0, features[0], batch_size, slots, batching)
    model.predict(predict, verbose=0)  # traces every shape
    start = time.perf_counter()
    model.predict(predict, verbose=0)
    predict_seconds = time.perf_counter() - start
    return {**result,
            "predict_examples_per_s": len(features[0]) / predict_seconds,
            "predict_tokens_per_s": float(features[0].lengths.sum())
            / predict_seconds,
            "peak_rss_mb": peak_rss_mb()}


# Batch layouts (`layout_comparison`): `Batching` arguments, and XLA for
# the whole step where a layout exists for it.
LAYOUTS = {
    "packed": {"padding": "packed"},
    "buckets": {"padding": "buckets"},
    "longest": {"padding": "longest"},
    "max_length": {"padding": "max_length"},
    # The static layouts, as on a TPU: the step compiled whole.
    "packed_static+jit_compile": {"padding": "packed", "static": True,
                                  "jit_compile": True},
    "max_length+jit_compile": {"padding": "max_length",
                               "jit_compile": True},
    "packed_static": {"padding": "packed", "static": True},
    "packed+bfloat16": {"padding": "packed", "policy": "mixed_bfloat16"},
}


def layout_settings(layout, max_seq_length):
    """(batching, jit_compile, dtype policy or None) of a `LAYOUTS` name."""
    settings = dict(LAYOUTS[layout])
    jit_compile = settings.pop("jit_compile", False)
    policy = settings.pop("policy", None)
    return Batching(max_seq_length=max_seq_length, **settings), (
        jit_compile), policy


def _layout_run(inputs, batch_size, steps, warmup_steps, layout):
    batching, jit_compile, policy = layout_settings(
        layout, inputs["max_seq_length"])
    if policy:  # the heads too
        keras.config.set_dtype_policy(policy)
    tasks, _, encoder, features = load_inputs(**inputs, dtype=policy)
    result = bam_tf_throughput(
        encoder.backbone, tasks, features, batch_size, steps, warmup_steps,
        batching=batching, jit_compile=jit_compile)
    return {"layout": layout, **result}


def layout_comparison(inputs, batch_size, layouts, steps, warmup_steps=3):
    """Training and prediction speed of each batch layout of `LAYOUTS`
    on the same examples, each in a fresh process, in the order given;
    ratios are against the first. Packed, longest and max_length train on
    the same batches; buckets regroups the stream (other batches of the
    same examples)."""
    context = multiprocessing.get_context("spawn")
    results = []
    for layout in layouts:
        with context.Pool(1) as pool:
            results.append(pool.apply(functools.partial(
                _layout_run, inputs, batch_size, steps, warmup_steps,
                layout)))
    for result in results:
        result["speed_vs_first"] = (result["train_examples_per_s"]
                                    / results[0]["train_examples_per_s"])
    return results


def _micro_batch_run(inputs, batch_size, steps, warmup_steps, buckets,
                     micro_batch_size):
    tasks, _, encoder, features = load_inputs(**inputs)
    length = inputs["max_seq_length"]
    return bam_tf_throughput(
        encoder.backbone, tasks, features, batch_size, steps, warmup_steps,
        Batching("buckets" if buckets else "max_length", length),
        predict=False, micro_batch_size=micro_batch_size)


def micro_batch_comparison(inputs, batch_size, micro_batch_sizes, steps,
                           warmup_steps=3, buckets=False):
    """Training speed and peak memory of the same steps on the same batches
    computed in micro-batches of each size (None: the whole batch), every
    batch padded to `max_seq_length` (memory's worst case, one shape) or,
    with `buckets`, to its length bucket (as training runs by default).

    Each size runs in a fresh process: a process's peak memory only grows,
    so sizes measured one after another in one process would hide each
    other's. `inputs`: `load_inputs`'s arguments. Returns one result per
    size, in order; ratios are against the first.
    """
    context = multiprocessing.get_context("spawn")
    results = []
    for size in micro_batch_sizes:
        with context.Pool(1) as pool:
            results.append({"micro_batch_size": size, **pool.apply(
                functools.partial(_micro_batch_run, inputs, batch_size,
                                  steps, warmup_steps, buckets, size))})
    baseline = results[0]
    for result in results:
        result["speed_vs_first"] = (result["train_examples_per_s"]
                                    / baseline["train_examples_per_s"])
        result["peak_rss_vs_first"] = (result["peak_rss_mb"]
                                       / baseline["peak_rss_mb"])
    return results


# Ways to run the same training step (`variant_comparison`). In the first
# group the arithmetic is the method's; the diagnostics leave a piece out
# to weigh it (the update: every gradient is still computed and consumed;
# dropout: every rate set to 0), and are not ways to train.
VARIANTS = {
    "default": {},
    "jit_compile": {"jit_compile": True},
    "inter_op_1": {"inter_op_threads": 1},
    "jit_compile+inter_op_1": {"jit_compile": True, "inter_op_threads": 1},
    "onednn_off": {"environment": {"TF_ENABLE_ONEDNN_OPTS": "0"}},
    "jit_compile+onednn_off": {"jit_compile": True, "environment": {
        "TF_ENABLE_ONEDNN_OPTS": "0"}},
    # XLA's own CPU matrix-product back ends.
    "jit_compile+xla_onednn": {"jit_compile": True, "environment": {
        "XLA_FLAGS": "--xla_cpu_use_onednn=true"}},
    "jit_compile+xla_xnnpack": {"jit_compile": True, "environment": {
        "XLA_FLAGS": "--xla_cpu_use_xnnpack=true"}},
}
DIAGNOSTIC_VARIANTS = {
    "no_update": {"update": False},
    "no_dropout": {"dropout": False},
    "jit_compile+no_update": {"jit_compile": True, "update": False},
}
ALL_VARIANTS = {**VARIANTS, **DIAGNOSTIC_VARIANTS}
# What any variant sets, recorded in every result: a variant's setting must
# reach its own process and no other.
ENVIRONMENT_KEYS = sorted({key for settings in ALL_VARIANTS.values()
                           for key in settings.get("environment", {})})


def variant_environment(variant, environ):
    """The variables `variant` sets, given the caller's `environ`. XLA
    takes all its options from one variable, so a variant's XLA option is
    added to the caller's (a user's --xla_dump_to, say), not put in their
    place.

    >>> variant_environment("jit_compile+xla_onednn", {"XLA_FLAGS": "--a"})
    {'XLA_FLAGS': '--a --xla_cpu_use_onednn=true'}
    """
    environment = dict(ALL_VARIANTS[variant].get("environment", {}))
    if environ.get("XLA_FLAGS") and "XLA_FLAGS" in environment:
        environment["XLA_FLAGS"] = (
            f"{environ['XLA_FLAGS']} {environment['XLA_FLAGS']}")
    return environment


def _no_update(model):
    """Replaces the model's optimizer update with a sum of every gradient
    into a variable: the backward pass still runs in full (an unconsumed
    gradient would be pruned from the graph), the update does not.
    Returns the variable."""
    sink = tf.Variable(0.0, trainable=False, name="gradient_sink")

    def apply(grads, variables=None):
        sink.assign(tf.add_n([
            tf.reduce_sum(g.values if isinstance(g, tf.IndexedSlices)
                          else g) for g in grads if g is not None]))
    model.optimizer.apply = apply
    return sink


def _no_dropout(model):
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0


def _variant_run(inputs, batch_size, steps, warmup_steps, variant):
    settings = ALL_VARIANTS[variant]
    if "inter_op_threads" in settings:  # before TensorFlow starts
        tf.config.threading.set_inter_op_parallelism_threads(
            settings["inter_op_threads"])
    tasks, _, encoder, features = load_inputs(**inputs)
    changes = [c for key, c in (("update", _no_update),
                                ("dropout", _no_dropout))
               if not settings.get(key, True)]
    result = bam_tf_throughput(
        encoder.backbone, tasks, features, batch_size, steps, warmup_steps,
        Batching("buckets", inputs["max_seq_length"]), predict=False,
        jit_compile=settings.get("jit_compile", False),
        change_model=lambda m: [c(m) for c in changes])
    # As this process saw them (inherited from `variant_comparison`).
    result["environment"] = {k: os.environ.get(k) for k in ENVIRONMENT_KEYS}
    return result


def variant_comparison(inputs, batch_size, variants, steps, warmup_steps=3):
    """Training speed of the same steps on the same batches (length
    buckets) run each way of `VARIANTS` or `DIAGNOSTIC_VARIANTS`, each in a
    fresh process (thread settings only take before TensorFlow starts, and
    environment variables before it loads), in the order given; ratios are
    against the first."""
    context = multiprocessing.get_context("spawn")
    results = []
    for variant in variants:
        # Inherited by the spawned process; this one's is restored after.
        with mock.patch.dict(os.environ,
                             variant_environment(variant, os.environ)):
            with context.Pool(1) as pool:
                results.append({"variant": variant, **pool.apply(
                    functools.partial(_variant_run, inputs, batch_size,
                                      steps, warmup_steps, variant))})
    for result in results:
        result["speed_vs_first"] = (result["train_examples_per_s"]
                                    / results[0]["train_examples_per_s"])
    return results


def multi_vs_single(load_backbone, tasks, features, batch_size,
                    warmup_steps=3, batching=None):
    """Training cost of one multi-task model over `tasks` against one
    single-task model per task, on the same examples: one pass over each
    task's examples (sampling proportional to size, exponent 1, so the
    mixture draws the tasks as the single-task runs do), each model on a
    freshly loaded backbone. Costs are seconds per example and per 1,000
    real tokens."""
    def cost(result):
        return {"seconds_per_example": result["train_seconds"]
                / (result["train_steps"] * batch_size),
                "seconds_per_1k_tokens": 1000 * result["train_seconds"]
                / result["train_real_tokens"]}
    total = sum(len(f) for f in features)
    multi = bam_tf_throughput(
        load_backbone(), tasks, features, batch_size,
        max(1, total // batch_size), warmup_steps, batching, exponent=1.0,
        predict=False)
    singles = {t.name: bam_tf_throughput(
        load_backbone(), [t], [f], batch_size, max(1, len(f) // batch_size),
        warmup_steps, batching, predict=False)
        for t, f in zip(tasks, features)}
    pooled = {key: sum(r[key] for r in singles.values())
              for key in ("train_seconds", "train_steps",
                          "train_real_tokens")}
    return {"multi_task": {**multi, **cost(multi)},
            "single_task": {name: {**r, **cost(r)}
                            for name, r in singles.items()},
            "single_task_pooled": {**pooled, **cost(pooled)},
            "multi_over_single_cost_per_example":
                cost(multi)["seconds_per_example"]
                / cost(pooled)["seconds_per_example"],
            "multi_over_single_cost_per_token":
                cost(multi)["seconds_per_1k_tokens"]
                / cost(pooled)["seconds_per_1k_tokens"]}


def keras_hub_throughput(backbone, tokenizer, task, examples, batch_size,
                         steps, warmup_steps=3, sequence_length=128,
                         learning_rate=5e-5):
    """`keras_hub.models.BertTextClassifier.fit` on the same examples, with
    its preprocessor (fixed-length padding) and AdamW."""
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer=tokenizer, sequence_length=sequence_length)
    classifier = keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=task.num_labels,
        preprocessor=preprocessor)
    optimizer = keras.optimizers.AdamW(
        learning_rate, weight_decay=0.01, epsilon=1e-6, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    classifier.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    texts = ((tf.constant(examples.text_a),) if examples.text_b is None else
             (tf.constant(examples.text_a), tf.constant(examples.text_b)))
    x = texts[0] if len(texts) == 1 else texts
    dataset = tf.data.Dataset.from_tensor_slices(
        (x, examples.labels)).shuffle(len(examples), seed=1).repeat().batch(
            batch_size, drop_remainder=True)
    seconds = _timed_fit(classifier, dataset, warmup_steps, steps)
    return {"train_examples_per_s": steps * batch_size / seconds,
            "train_seconds": seconds, "train_steps": steps}


def input_pipeline_throughput(tasks, features, batch_size, batches=200,
                              batching=None):
    """Examples per second the training stream alone delivers, in
    `batching`'s layout (default: each batch padded to its longest)."""
    train, _ = pipeline.train_dataset(tasks, features, batch_size, 1,
                                      batching=batching)
    iterator = iter(train)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def summary_line(name, result):
    return (f"{name}: " + ", ".join(
        f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in result.items()))

