"""Throughput of bam-tf's training and prediction, and of keras-hub's
`BertTextClassifier.fit` as a baseline on the same encoder, data, batch size
and optimizer. Tracing and the first steps are excluded from the timings."""

import resource
import time

import keras
import keras_hub
import tensorflow as tf

from bam_tf.data import pipeline
from bam_tf.model import BamModel
from bam_tf.optimization import build_optimizer


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Timer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start


def _timed_fit(model, dataset, warmup_steps, steps):
    model.fit(dataset, epochs=1, steps_per_epoch=warmup_steps, verbose=0)
    timer = _Timer()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0,
              callbacks=[timer])
    return timer.seconds


def bam_tf_throughput(backbone, tasks, features, batch_size, steps,
                      warmup_steps=3, bucket_lengths=None,
                      sequence_length=None, learning_rate=5e-5, seed=1):
    """Training and prediction throughput of the BAM model."""
    train, _ = pipeline.train_dataset(
        tasks, features, batch_size, seed, bucket_lengths=bucket_lengths,
        sequence_length=sequence_length)
    # The tokens the timed steps see (the stream is a function of the seed).
    real_tokens = sum(
        int(tf.reduce_sum(b["padding_mask"]))
        for b in train.skip(warmup_steps).take(steps))
    model = BamModel(backbone, [(t.name, t.num_labels, t.is_regression)
                                for t in tasks],
                     total_steps=warmup_steps + steps,
                     global_batch_size=batch_size)
    model(next(iter(train)))
    model.compile(optimizer=build_optimizer(
        model, backbone, learning_rate, warmup_steps + steps,
        lr_decay=1.0))
    seconds = _timed_fit(model, train, warmup_steps, steps)
    examples = steps * batch_size

    slots = pipeline.num_label_slots(tasks)
    predict = pipeline.eval_dataset(tasks[0], 0, features[0], batch_size,
                                    slots, sequence_length=sequence_length,
                                    static_batches=sequence_length is not None)
    model.predict(predict.take(2), verbose=0)  # trace
    start = time.perf_counter()
    model.predict(predict, verbose=0)
    predict_seconds = time.perf_counter() - start
    return {"train_examples_per_s": examples / seconds,
            "train_tokens_per_s": real_tokens / seconds,
            "train_seconds": seconds, "train_steps": steps,
            "predict_examples_per_s": len(features[0]) / predict_seconds,
            "predict_tokens_per_s": float(features[0].lengths.sum())
            / predict_seconds,
            "peak_rss_mb": peak_rss_mb()}


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
                              bucket_lengths=None, sequence_length=None):
    """Examples per second the training stream alone delivers."""
    train, _ = pipeline.train_dataset(
        tasks, features, batch_size, 1, bucket_lengths=bucket_lengths,
        sequence_length=sequence_length)
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

