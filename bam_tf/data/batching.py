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
from bam_tf.data import pipeline
from bam_tf.data.sampling import task_sampling_probabilities

# The layouts that train on the mixed stream's own batches, and what the
# identity records for each (`bam_tf.store.identity`).
IDENTITY_PADDING = {"packed": "longest", "longest": "longest",
                    "max_length": "longest", "buckets": "buckets"}


@dataclasses.dataclass(frozen=True)
class Batching:
    """A batch layout.

    Args:
        padding: one of `PADDINGS`.
        max_seq_length: the longest an example can be.
        static: static shapes (TPUs, a step compiled by XLA): packed rows
            of one length and a few row counts. `max_length` is static by
            itself; `buckets` and `longest` cannot be.

    Example:
    >>> batching = Batching("packed", max_seq_length=128)
    >>> batching.eval_layout(groups=1).row_lengths
    (16, 32, 64, 128)
    """

    padding: str = "packed"
    max_seq_length: int = 128
    static: bool = False

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

    def train_args(self, features, batch_size, exponent=0.75, groups=1):
        """`pipeline.train_dataset`'s layout arguments for batches of
        `batch_size` drawn from `features` (one per task); `groups`:
        replicas times micro-batches per replica."""
        if self.padding == "packed":
            probabilities = task_sampling_probabilities(
                [len(f) for f in features], exponent)
            return {"packing": self._layout(
                [f.lengths for f in features], probabilities, batch_size,
                groups)}
        return self._padded_args()

    def eval_args(self, features, batch_size, groups=1):
        """`pipeline.eval_dataset`'s layout arguments for one split."""
        if self.padding == "packed":
            return {"packing": self._layout([features.lengths], [1.0],
                                            batch_size, groups)}
        args = self._padded_args()
        if self.padding == "max_length":
            args["static_batches"] = True
        return args

    def eval_layout(self, groups=1):
        """The packed layout of prediction batches with dynamic shapes."""
        return packing.PackedLayout(
            tuple(pipeline.bucket_boundaries(self.max_seq_length)), groups)

    def _layout(self, lengths, probabilities, batch_size, groups):
        if not self.static:
            return self.eval_layout(groups)
        return packing.PackedLayout(
            (self.max_seq_length,), groups, packing.static_row_counts(
                lengths, probabilities, batch_size, groups,
                self.max_seq_length))

    def _padded_args(self):
        if self.padding == "buckets":
            return {"bucket_lengths": pipeline.bucket_boundaries(
                self.max_seq_length)}
        if self.padding == "max_length":
            return {"sequence_length": self.max_seq_length}
        return {}
