"""How a run's batches are laid out: made once from the configuration and
the device, given to training, prediction and the benchmarks.

Layouts (`--padding`):
    packed: each batch of the mixed stream packed into rows
        (`bam_tf.data.packing`): no compute on padding. With static shapes
        (TPUs, XLA) one row length (max_seq_length) and a few row counts.
    longest: each batch padded to its longest example.
    max_length: each batch padded to max_seq_length (static shapes).
    buckets: the mixed stream regrouped into batches of similar lengths,
        padded to a few bucket lengths: other batches than the three above.

packed, longest and max_length train on the same batches and compute the
same function, up to float rounding (and dropout masks): they are one
run's identity (`IDENTITY_PADDING`). buckets is another.
"""

import dataclasses

import tensorflow as tf

from bam_tf.config import PADDINGS
from bam_tf.config import STATIC_PADDINGS
from bam_tf.data import packing

# The layouts that train on the mixed stream's own batches, and what the
# identity records for each (`bam_tf.store.identity`).
IDENTITY_PADDING = {"packed": "longest", "longest": "longest",
                    "max_length": "longest", "buckets": "buckets"}


def bucket_boundaries(max_seq_length, smallest=16):
    """Lengths padded to in length bucketing: powers of two from `smallest`
    up to, and always including, max_seq_length (a handful of shapes, so
    retracing stays bounded)."""
    sizes = []
    size = smallest
    while size < max_seq_length:
        sizes.append(size)
        size *= 2
    return sizes + [max_seq_length]


@dataclasses.dataclass(frozen=True)
class Batching:
    """A batch layout, given to `bam_tf.data.pipeline`'s training stream
    and prediction datasets.

    Args:
        padding: one of `PADDINGS`.
        max_seq_length: the longest an example can be.
        static: static shapes (TPUs, a step compiled by XLA): packed rows
            of one length and a few row counts. `max_length` is static by
            itself; `buckets` and `longest` cannot be.
        smallest_bucket: the shortest bucket length (`bucket_boundaries`),
            of `buckets` and of packed rows with dynamic shapes.

    Example:
    >>> batching = Batching("packed", max_seq_length=128)
    >>> batching.packed_layout([[5, 9]], [1.0], batch_size=2).row_lengths
    (16, 32, 64, 128)
    >>> Batching("buckets", max_seq_length=128).bucket_lengths
    [16, 32, 64, 128]
    """

    padding: str = "packed"
    max_seq_length: int = 128
    static: bool = False
    smallest_bucket: int = 16

    def __post_init__(self):
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got "
                             f"{self.padding!r}.")
        if self.static and self.padding not in STATIC_PADDINGS:
            raise ValueError(f"--padding={self.padding} has no static "
                             "shapes: use packed or max_length.")

    @classmethod
    def of(cls, config, runtime=None, strategy=None):
        """The layout of `config` on `runtime`'s device (a TPU: the
        runtime's strategy, or `strategy` a `TPUStrategy`)."""
        tpu = runtime is not None and runtime.strategy == "tpu" or (
            isinstance(strategy, tf.distribute.TPUStrategy))
        return cls.on_device(config.padding, config.max_seq_length, tpu=tpu,
                             jit_compile=runtime is not None
                             and runtime.jit_compile)

    @classmethod
    def on_device(cls, padding, max_seq_length, tpu=False,
                  jit_compile=False):
        """`padding` laid out for a device: static shapes on a TPU or with
        the whole step compiled, where the layout has them."""
        return cls(padding, max_seq_length, (tpu or jit_compile)
                   and padding in STATIC_PADDINGS)

    @property
    def is_static(self):
        return self.static or self.padding == "max_length"

    @property
    def sequence_length(self):
        """The length every batch is padded to, or None (`max_length`
        only)."""
        return self.max_seq_length if self.padding == "max_length" else None

    @property
    def bucket_lengths(self):
        """The lengths `buckets` pads to, or None."""
        if self.padding != "buckets":
            return None
        return bucket_boundaries(self.max_seq_length, self.smallest_bucket)

    def packed_layout(self, lengths, probabilities, batch_size, groups=1):
        """The `PackedLayout` of batches of `batch_size` drawn with
        `probabilities` from examples of `lengths` (one array per task;
        they size a static layout's row counts), split into `groups`
        (replicas times micro-batches per replica); None unless packed.
        With dynamic shapes rows are a few bucket lengths long."""
        if self.padding != "packed":
            return None
        if not self.static:
            return packing.PackedLayout(tuple(bucket_boundaries(
                self.max_seq_length, self.smallest_bucket)), groups)
        return packing.PackedLayout(
            (self.max_seq_length,), groups, packing.static_row_counts(
                lengths, probabilities, batch_size, groups,
                self.max_seq_length))
