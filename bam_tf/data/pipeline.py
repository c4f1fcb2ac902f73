"""Features -> tf.data: one dataset per task, all with the same element
structure, mixed for training by `sample_from_datasets`.

Every element is a dict:
    token_ids, segment_ids, padding_mask: int32 [length]
        (padding_mask is int32, not bool: Keras reduces the first batch
        across replicas to build the model, and that fails on booleans
        with `AddN ... bool`)
    task_id: int32, the task's position in the run's task list
    eid: int32, the example id
    label: int32, the gold class (0 for regression and unlabelled splits)
    target: float32, the gold regression value scaled to [0, 1]
    teacher_logits: float32 [num_label_slots], the teacher's logits
    teacher_prediction: float32, the teacher's scaled regression output
    has_teacher: float32, 1 where teacher targets are filled in
    is_real: float32, 0 for padding examples of fixed-size eval batches
"""

import functools

import numpy as np
import tensorflow as tf

from bam_tf.data import packing as packing_lib
from bam_tf.data.batching import Batching
from bam_tf.data.sampling import task_sampling_probabilities

TOKEN_KEYS = ("token_ids", "segment_ids", "padding_mask")


def num_label_slots(tasks):
    return max(task.num_labels for task in tasks)


def example_dataset(task, task_id, features, label_slots, teacher=None):
    """One task's examples, unbatched, in the features' order.

    Args:
        task: the `Task`.
        task_id: its index in the run.
        features: its `Features`.
        label_slots: the width of `teacher_logits` (largest label count).
        teacher: None, or the teacher's outputs aligned with `features`:
            logits [n, num_labels] for classification, scaled predictions
            [n] for regression.
    """
    n = len(features)
    ragged = lambda values: tf.RaggedTensor.from_row_lengths(
        values, features.lengths.astype(np.int64))
    label = np.zeros([n], np.int32)
    target = np.zeros([n], np.float32)
    if features.labels is not None:
        if task.is_regression:
            target = task.scale_label(features.labels).astype(np.float32)
        else:
            label = features.labels.astype(np.int32)
    teacher_logits = np.zeros([n, label_slots], np.float32)
    teacher_prediction = np.zeros([n], np.float32)
    has_teacher = np.zeros([n], np.float32)
    if teacher is not None:
        teacher = np.asarray(teacher, np.float32)
        if task.is_regression:
            teacher_prediction = teacher.reshape([n])
        else:
            teacher_logits[:, :task.num_labels] = teacher
        has_teacher[:] = 1.0
    columns = {
        "token_ids": ragged(features.token_ids),
        "segment_ids": ragged(features.segment_ids),
        "task_id": np.full([n], task_id, np.int32),
        "eid": features.eids.astype(np.int32),
        "label": label,
        "target": target,
        "teacher_logits": teacher_logits,
        "teacher_prediction": teacher_prediction,
        "has_teacher": has_teacher,
        "is_real": np.ones([n], np.float32),
    }
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    return dataset.map(_add_padding_mask)


def _add_padding_mask(element):
    element = dict(element)
    element["padding_mask"] = tf.ones_like(element["token_ids"])
    return element


def _padded_shapes(element_spec, sequence_length):
    return {key: ([sequence_length] if key in TOKEN_KEYS else spec.shape)
            for key, spec in element_spec.items()}


def _reshuffled_passes(ds, n, seed):
    """Endless passes over `ds`, each in a new order, the same orders for
    every iterator made from the result.

    `shuffle(reshuffle_each_iteration=True)` keeps its random state in the
    dataset object, so each new iterator over it starts another sequence
    of orders: a resumed run, which skips the batches already trained on,
    would train on other data than the killed one as soon as it made one
    iterator more or fewer. Built inside `flat_map`, the state is made
    afresh with each iterator.
    """
    return tf.data.Dataset.range(1).flat_map(
        lambda _: ds.shuffle(n, seed=seed,
                             reshuffle_each_iteration=True).repeat())


def train_dataset(tasks, features, batch_size, seed, exponent=0.75,
                  teachers=None, batching=None, groups=1, shuffle=True):
    """The multi-task training stream: endless, shuffled, mixed, batched.

    Args:
        tasks: the run's `Task`s, in task-id order.
        features: their training `Features`, same order.
        batch_size: the global batch size.
        seed: seeds shuffling and task sampling.
        exponent: task sampling exponent (`task_sampling_probabilities`).
        teachers: optional {task name: aligned teacher outputs}.
        batching: the batch layout (`bam_tf.data.batching.Batching`;
            default each batch padded to its longest example).
            `max_length` pads every batch to max_seq_length (static
            shapes, as TPUs need). `buckets` (CPU/GPU, never TPU) regroups
            the mixed stream after sampling into batches of similar
            length, padded to the smallest bucket length that holds them,
            so task probabilities do not change. `packed` packs each batch
            of the mixed stream into rows (`bam_tf.data.packing`).
        groups: a packed batch's groups of rows: replicas times
            micro-batches per replica.
        shuffle: shuffle each task's examples (every pass anew).

    Returns:
        (dataset, probabilities): batches are always full
        (`drop_remainder`), so shapes other than the length are static.
    """
    batching = batching or Batching("longest")
    teachers = teachers or {}
    slots = num_label_slots(tasks)
    datasets = []
    for task_id, (task, task_features) in enumerate(zip(tasks, features)):
        ds = example_dataset(task, task_id, task_features, slots,
                             teachers.get(task.name))
        if shuffle:
            datasets.append(_reshuffled_passes(ds, len(task_features),
                                               seed + task_id))
        else:
            datasets.append(ds.repeat())
    probabilities = task_sampling_probabilities(
        [len(f) for f in features], exponent)
    if len(datasets) == 1:
        mixed = datasets[0]
    else:
        mixed = tf.data.Dataset.sample_from_datasets(
            datasets, weights=probabilities.tolist(), seed=seed)
    bucket_lengths = batching.bucket_lengths
    if bucket_lengths:
        # tf.data buckets are [b_{i-1}, b_i); pad_to_bucket_boundary pads
        # to b_i - 1, hence the + 1.
        mixed = mixed.bucket_by_sequence_length(
            lambda element: tf.shape(element["token_ids"])[0],
            bucket_boundaries=[b + 1 for b in bucket_lengths],
            bucket_batch_sizes=[batch_size] * (len(bucket_lengths) + 1),
            pad_to_bucket_boundary=True, drop_remainder=True)
    else:
        mixed = mixed.padded_batch(
            batch_size, padded_shapes=_padded_shapes(
                mixed.element_spec, batching.sequence_length),
            drop_remainder=True)
    layout = batching.packed_layout([f.lengths for f in features],
                                    probabilities, batch_size, groups)
    if layout is not None:
        mixed = mixed.map(functools.partial(_pack, layout=layout))
    return mixed.prefetch(tf.data.AUTOTUNE), probabilities


def _pack(batch, layout):
    return packing_lib.pack_batch(batch, layout.row_lengths, layout.groups,
                                  layout.row_counts)


def eval_dataset(task, task_id, features, batch_size, label_slots,
                 batching=None, groups=1):
    """Every example of one split exactly once: in order, or with
    `buckets` or `packed` batching sorted by length (rows carry their
    example ids).

    `batching` (`bam_tf.data.batching.Batching`; default each batch
    padded to its longest): with `max_length` the last batch is filled up
    with padding examples (`is_real` = 0) so that every batch has
    `batch_size` rows, every sequence padded to max_seq_length: scoring
    drops the padding by `is_real`. With `buckets` (CPU/GPU) examples of
    similar length share a batch, padded to the smallest bucket length
    that holds its longest: little padding and a handful of shapes. With
    `packed` each batch is packed into rows; where it has several `groups`
    (one per replica) or static shapes, the last batch is filled up with
    empty padding examples, so that every batch splits into equal groups.
    """
    batching = batching or Batching("longest")
    if batching.padding == "packed" or batching.bucket_lengths:
        # Sorted by length, so that a batch holds examples of similar
        # lengths: a few packed rows, or a short bucket.
        ds = example_dataset(
            task, task_id,
            features.select(np.argsort(features.lengths, kind="stable")),
            label_slots)
        if batching.padding == "packed" and (batching.static or groups > 1):
            ds = _filled_up(ds, len(features), batch_size)
        ds = ds.padded_batch(
            batch_size, padded_shapes=_padded_shapes(ds.element_spec, None))
        if batching.padding == "packed":
            layout = batching.packed_layout([features.lengths], [1.0],
                                            batch_size, groups)
            ds = ds.map(functools.partial(_pack, layout=layout))
        else:
            ds = ds.map(functools.partial(
                _pad_to_bucket, boundaries=tf.constant(
                    sorted(batching.bucket_lengths), tf.int32)))
        return ds.prefetch(tf.data.AUTOTUNE)
    ds = example_dataset(task, task_id, features, label_slots)
    static = batching.is_static
    if static:
        ds = _filled_up(ds, len(features), batch_size)
    ds = ds.padded_batch(
        batch_size,
        padded_shapes=_padded_shapes(ds.element_spec,
                                     batching.sequence_length),
        drop_remainder=static)
    return ds.prefetch(tf.data.AUTOTUNE)


def _pad_to_bucket(batch, boundaries):
    """`batch`'s tokens padded to the smallest of `boundaries` that holds
    its longest (or left at its length, when none does)."""
    length = tf.shape(batch["token_ids"])[1]
    target = boundaries[tf.argmax(tf.cast(boundaries >= length, tf.int32))]
    target = tf.maximum(target, length)
    return {key: (tf.pad(value, [[0, 0], [0, target - length]])
                  if key in TOKEN_KEYS else value)
            for key, value in batch.items()}


def _filled_up(ds, size, batch_size):
    """`ds` (`size` examples) and padding examples (`is_real` 0, one
    masked token) up to a multiple of `batch_size`."""
    pad = -size % batch_size
    if not pad:
        return ds
    filler = {
        key: (tf.zeros([pad, 1], spec.dtype) if key in TOKEN_KEYS
              else tf.zeros([pad] + spec.shape.as_list(), spec.dtype))
        for key, spec in ds.element_spec.items()}
    return ds.concatenate(tf.data.Dataset.from_tensor_slices(filler))
