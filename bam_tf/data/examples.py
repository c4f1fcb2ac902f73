"""Examples: the texts, ids and labels of one task's split, column-wise."""

import dataclasses
from typing import Optional

import numpy as np

from bam_tf.errors import BamError


class DataError(BamError):
    """Bad input data; the message names the file, the line and what was
    expected."""


@dataclasses.dataclass
class Examples:
    """One split of one task, stored column-wise.

    Attributes:
        task: the task's name.
        split: the split's name (`train`, `dev`, `test_matched`, ...).
        eids: int64 example ids. An id is the row's position in its file
            (0-based, header not counted); the swapped copy of an unordered
            pair gets that position plus the file's number of rows.
        text_a: the first texts.
        text_b: the second texts, or None for one-text tasks.
        labels: label indices (int32) for classification, raw values
            (float32) for regression, None for unlabelled splits.
        num_rows: the number of rows of the source split (before
            doubling or truncation), which the ids of swapped copies use.
        source: the file or TFDS name the examples came from.
    """

    task: str
    split: str
    eids: np.ndarray
    text_a: list
    text_b: Optional[list]
    labels: Optional[np.ndarray]
    num_rows: int
    source: str

    def __len__(self):
        return len(self.eids)

    def take(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            eids=self.eids[indices],
            text_a=[self.text_a[i] for i in indices],
            text_b=None if self.text_b is None
            else [self.text_b[i] for i in indices],
            labels=None if self.labels is None else self.labels[indices])

    def head(self, n):
        """The first n rows of the source (and their swapped copies)."""
        return self.take(np.nonzero(self.eids % self.num_rows < n)[0])

    def doubled(self):
        """Both orders of every pair: for tasks where order carries no
        meaning (the original doubled MRPC and STS-B training sets)."""
        if self.text_b is None:
            raise ValueError(f"{self.task}: only pairs can be doubled.")
        return dataclasses.replace(
            self,
            eids=np.concatenate([self.eids, self.eids + self.num_rows]),
            text_a=self.text_a + self.text_b,
            text_b=self.text_b + self.text_a,
            labels=None if self.labels is None
            else np.concatenate([self.labels, self.labels]))
