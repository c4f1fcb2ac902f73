"""Packed batches: a batch's examples laid end to end in rows of a fixed
length, so that no step computes padding.

A packed batch holds exactly the examples of the padded batch it is made
from (the same sampling, targets and labels); only where their tokens sit
changes. Each example keeps its own positions (0, 1, ... from its first
token) and an id shared by its tokens (`packing_ids`, 0 on empty slots);
the encoder (`bam_tf.encoders.packed`) lets a token attend only to tokens
of the same id (Krell et
al. 2021, "Efficient Sequence Packing without Cross-contamination"), so
each example's vectors are those it would have alone in a padded row.
Examples are placed by first-fit decreasing: never split, never truncated.

Every tensor has a leading group axis: a batch is packed as `groups`
groups of consecutive examples, each into its own rows, so that
splitting the batch along the first axis (replicas, micro-batches)
gives each part whole groups, their examples and their rows:

    token_ids, segment_ids, positions, packing_ids: int32 [G, R, L]
    cls_index: int32 [G, m], each example's first token in its group's
        rows flattened (row * L + offset); m = batch size / G
    every per-example key of the padded batch: [G, m, ...]

Example:
>>> batch = {"token_ids": tf.constant([[2, 5, 3], [2, 6, 0]]),
...          "segment_ids": tf.zeros([2, 3], tf.int32),
...          "padding_mask": tf.constant([[1, 1, 1], [1, 1, 0]]),
...          "label": tf.constant([0, 1])}
>>> packed = pack_batch(batch, row_lengths=(8,))
>>> packed["token_ids"].numpy().tolist()
[[[2, 5, 3, 2, 6, 0, 0, 0]]]
>>> packed["positions"].numpy().tolist()
[[[0, 1, 2, 0, 1, 0, 0, 0]]]
>>> packed["cls_index"].numpy().tolist()
[[0, 3]]
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

TOKEN_KEYS = ("token_ids", "segment_ids", "positions", "packing_ids")


@dataclasses.dataclass(frozen=True)
class PackedLayout:
    """How batches are packed.

    Args:
        row_lengths: the row lengths a batch may use; the packer takes the
            one that computes the fewest tokens (rows x length; the shorter
            on a tie), among those that hold the batch's longest example.
            One length (the longest an example can be) for static shapes.
        groups: groups per batch, each packed into its own rows (replicas
            times micro-batches per replica: see the module docstring).
        row_counts: None: as many rows as the batch needs (shapes vary).
            Else the numbers of rows a batch may have, ascending, the last
            one at least the examples per group: a batch takes the smallest
            that holds it, the rest of its rows empty, so that a step
            compiles once per count (XLA, TPUs).
    """

    row_lengths: tuple
    groups: int = 1
    row_counts: Optional[tuple] = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("row_lengths", tuple(sorted(int(n) for n in self.row_lengths)))
        if not self.row_lengths or self.row_lengths[0] < 1:
            raise ValueError(f"row_lengths must be positive lengths, got "
                             f"{self.row_lengths}.")
        if self.row_counts is not None:
            set_("row_counts", tuple(sorted(int(n) for n in self.row_counts)))
            if len(self.row_lengths) != 1:
                raise ValueError("Static shapes need one row length, got "
                                 f"{self.row_lengths}.")

    @property
    def static(self):
        return self.row_counts is not None

    @property
    def row_length(self):
        return self.row_lengths[-1]


def static_row_counts(lengths, probabilities, batch_size, groups,
                      row_length, seed=0, samples=256, quantile=0.99):
    """The row counts of a static layout for batches drawn from a mix.

    The first count holds `quantile` of simulated groups (`samples` groups
    of batch_size / groups examples, each drawn from task t with
    probability probabilities[t] and then uniformly from lengths[t], packed
    as `pack_batch` packs them); then doubling, up to the group's size in
    examples, which holds any group. A batch that needs more rows than the
    first count takes the next one: one more compiled shape, never a
    dropped or split example.

    Args:
        lengths: per task, the token count of each of its examples.
        probabilities: the tasks' sampling probabilities.
    """
    per_group = batch_size // groups
    rng = np.random.default_rng(seed)
    probabilities = np.asarray(probabilities, np.float64)
    tasks = rng.choice(len(lengths), size=(samples, per_group),
                       p=probabilities / probabilities.sum())
    drawn = np.zeros([samples, per_group], np.int32)
    for t, task_lengths in enumerate(lengths):
        task_lengths = np.asarray(task_lengths)
        where = tasks == t
        drawn[where] = task_lengths[rng.integers(0, len(task_lengths),
                                                 where.sum())]
    needed = _rows_needed(tf.constant(drawn), row_length).numpy()
    first = max(1, int(np.ceil(np.quantile(needed, quantile))))
    counts = [first]
    while counts[-1] < per_group:
        counts.append(min(2 * counts[-1], per_group))
    return tuple(counts)


@tf.function(reduce_retracing=True)
def _rows_needed(lengths, row_length):
    return tf.map_fn(lambda n: first_fit_decreasing(n, row_length)[2],
                     lengths, fn_output_signature=tf.int32)


def first_fit_decreasing(lengths, row_length):
    """Places items of `lengths` (int32 [n], each at most `row_length`) in
    rows: longest first, each in the first row with room.

    Returns:
        (row, offset, rows): each item's row and its first slot in it, and
        the number of rows used. Empty items take row 0, offset 0.
    """
    lengths = tf.convert_to_tensor(lengths, tf.int32)
    n = tf.shape(lengths)[0]
    order = tf.argsort(lengths, direction="DESCENDING", stable=True)

    def body(i, used, row, offset):
        item = order[i]
        length = lengths[item]
        fits = tf.cast(used + length <= row_length, tf.int32)
        r = tf.cast(tf.argmax(fits), tf.int32)
        at = tf.where(length > 0, used[r], 0)
        row = tf.tensor_scatter_nd_update(row, [[item]], [r])
        offset = tf.tensor_scatter_nd_update(offset, [[item]], [at])
        used = tf.tensor_scatter_nd_add(used, [[r]], [length])
        return i + 1, used, row, offset

    zeros = tf.zeros([n], tf.int32)
    _, used, row, offset = tf.while_loop(
        lambda i, *_: i < n, body, (tf.constant(0), zeros, zeros, zeros))
    rows = tf.reduce_sum(tf.cast(used > 0, tf.int32))
    return row, offset, tf.maximum(rows, 1)


def pack_batch(batch, row_lengths, groups=1, row_counts=None):
    """A padded batch (`token_ids`, `segment_ids`, `padding_mask` of
    [batch, T] and per-example keys of [batch, ...]) as a packed one (the
    module docstring); see `PackedLayout` for the arguments. The batch
    size must be a multiple of `groups`; every example must fit a row of
    the longest of `row_lengths`."""
    layout = PackedLayout(tuple(row_lengths), groups,
                          None if row_counts is None else tuple(row_counts))
    mask = tf.cast(batch["padding_mask"], tf.int32)
    size = tf.shape(mask)[0]
    per_group = size // groups
    lengths = tf.reshape(tf.reduce_sum(mask, 1), [groups, per_group])
    longest = tf.reduce_max(lengths)
    tf.debugging.assert_less_equal(
        longest, layout.row_length,
        message="an example is longer than the packed rows")

    # For each candidate length: every group's placement; the rows a
    # batch takes are its fullest group's (all groups share one shape).
    placements, costs = [], []
    for row_length in layout.row_lengths:
        placed = [first_fit_decreasing(lengths[g], row_length)
                  for g in range(groups)]
        rows = tf.reduce_max(tf.stack([p[2] for p in placed]))
        placements.append((tf.stack([p[0] for p in placed]),
                            tf.stack([p[1] for p in placed]), rows))
        fits = longest <= row_length
        costs.append(tf.where(fits, rows * row_length, tf.int32.max))
    # Fewest computed tokens; argmin takes the first (shortest) on a tie.
    choice = tf.cast(tf.argmin(tf.stack(costs)), tf.int32)
    row_length = tf.gather(tf.constant(layout.row_lengths, tf.int32), choice)
    row = tf.gather(tf.stack([p[0] for p in placements]), choice)
    offset = tf.gather(tf.stack([p[1] for p in placements]), choice)
    rows = tf.gather(tf.stack([p[2] for p in placements]), choice)
    if layout.static:
        counts = tf.constant(layout.row_counts, tf.int32)
        tf.debugging.assert_less_equal(
            rows, counts[-1], message="a batch needs more rows than the "
            "largest static row count")
        rows = counts[tf.argmax(tf.cast(counts >= rows, tf.int32))]
    return _lay_out(batch, mask, row, offset, rows, row_length, groups,
                    per_group, layout)


def _lay_out(batch, mask, row, offset, rows, row_length, groups, per_group,
             layout):
    """Scatters each example's tokens to its row and offset."""
    length = tf.shape(mask)[1]
    group_mask = tf.reshape(mask, [groups, per_group, length])
    where = tf.cast(tf.where(group_mask > 0), tf.int32)  # [tokens, 3]
    g, e, j = where[:, 0], where[:, 1], where[:, 2]
    at = tf.gather_nd(row, where[:, :2]) * row_length + (
        tf.gather_nd(offset, where[:, :2]) + j)
    destination = tf.stack([g, at], 1)
    shape = tf.stack([groups, rows * row_length])

    def scatter(values):
        flat = tf.scatter_nd(destination, values, shape)
        return tf.reshape(flat, [groups, rows, row_length])

    def token_values(key):
        values = tf.reshape(tf.cast(batch[key], tf.int32),
                            [groups, per_group, length])
        return tf.gather_nd(values, where)

    packed = {
        "token_ids": scatter(token_values("token_ids")),
        "segment_ids": scatter(token_values("segment_ids")),
        "positions": scatter(j),
        "packing_ids": scatter(e + 1),
    }
    lengths = tf.reduce_sum(group_mask, 2)
    packed["cls_index"] = tf.where(lengths > 0, row * row_length + offset, 0)
    static_rows = layout.row_counts[0] if (
        layout.static and len(layout.row_counts) == 1) else None
    static_length = layout.row_lengths[0] if len(
        layout.row_lengths) == 1 else None
    for key in TOKEN_KEYS:
        packed[key].set_shape([groups, static_rows, static_length])
    static_per_group = (batch["padding_mask"].shape[0] // groups
                        if batch["padding_mask"].shape[0] is not None
                        else None)
    packed["cls_index"].set_shape([groups, static_per_group])
    for key, value in batch.items():
        if key in packed or key == "padding_mask":
            continue
        value = tf.reshape(value, tf.concat(
            [[groups, per_group], tf.shape(value)[1:]], 0))
        value.set_shape([groups, static_per_group]
                        + batch[key].shape.as_list()[1:])
        packed[key] = value
    return packed


def is_packed(batch):
    return "packing_ids" in batch


def merge_groups(batch):
    """A packed batch with its groups merged: rows [G * R, L], per-example
    keys [G * m, ...], `cls_index` into all rows flattened. A batch whose
    groups are merged already (or one group taken from a split) is
    returned as it is."""
    if batch["token_ids"].shape.rank == 2:
        return batch
    shape = tf.shape(batch["token_ids"])
    groups, rows, row_length = shape[0], shape[1], shape[2]
    merged = {}
    for key, value in batch.items():
        if key in TOKEN_KEYS:
            merged[key] = tf.reshape(value, [groups * rows, row_length])
        else:
            if key == "cls_index":
                value = value + (tf.range(groups) * rows * row_length)[:, None]
            rest = value.shape[2:]
            merged[key] = tf.reshape(value, [-1] + rest.as_list()) if (
                rest.is_fully_defined()) else tf.reshape(
                    value, tf.concat([[-1], tf.shape(value)[2:]], 0))
    return merged


def token_efficiency(batch):
    """Real tokens over computed tokens (rows times row length, or batch
    times padded length) of a packed or a padded batch."""
    if is_packed(batch):
        ids = batch["packing_ids"]
        return float(np.count_nonzero(ids)) / max(1, np.size(ids))
    mask = np.asarray(batch["padding_mask"])
    return float(mask.sum()) / max(1, mask.size)
