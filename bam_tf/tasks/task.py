"""A task: where its examples are, what its labels are, how it is scored."""

import dataclasses
from typing import NamedTuple, Optional

from bam_tf.tasks.scoring import METRICS


class HeadSpec(NamedTuple):
    """What a task's head needs to know of it: the model's view of a task.
    A tuple, so that saved model configs (lists) read back as specs."""

    name: str
    num_labels: int
    is_regression: bool


@dataclasses.dataclass(frozen=True)
class SplitFormat:
    """The layout of one split's TSV file.

    Columns are 0-based; a negative column counts from the end of the row
    (MNLI's gold label is the last field, whose position differs per split).

    Args:
        file: the file name inside the task's folder.
        num_fields: how many tab-separated fields every row has.
        text_a: column of the first text.
        text_b: column of the second text, or None for one-text tasks.
        label: column of the label, or None for unlabelled (test) splits.
        header: whether the first line is a header.
        folder: a folder other than the task's own (the diagnostic set).

    Example:
    >>> SplitFormat("test.tsv", 2, text_a=1).label is None
    True
    """

    file: str
    num_fields: int
    text_a: int
    text_b: Optional[int] = None
    label: Optional[int] = None
    header: bool = True
    folder: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Task:
    """A text classification or regression task, declared as data.

    Args:
        name: the task's short name (`rte`), used in flags and file names.
        folders: folder names under the GLUE directory, first found wins
            (the standard `RTE` and the original BAM's `rte`).
        splits: split name -> `SplitFormat`. Train and dev splits carry
            labels; test splits usually do not.
        label_list: label strings for classification, as they appear in the
            files; None for regression.
        regression_range: (min, max) of regression labels, scaled to [0, 1]
            for the sigmoid head.
        unordered_pair: the order of the two texts does not matter; train
            examples are then doubled with the texts swapped.
        metrics: names of `bam_tf.tasks.scoring` metrics; the first is the
            paper's score.
        dev_splits: the splits scored after training (MNLI: both).
        test_splits: the splits predicted for submission.
        submission_files: split -> GLUE leaderboard file name.
        tfds_name: the TFDS builder config (`glue/rte`) or None.
        tfds_splits: split -> TFDS split name.
        tfds_text_keys: TFDS feature names of text a and text b.
        tfds_label_names: the label strings in the order of TFDS's integer
            labels, where that order is not `label_list`'s (None: the same).
        in_glue_average: whether the GLUE average counts it (not WNLI).

    Example:
    >>> task = Task(
    ...     name="reviews", folders=("reviews",),
    ...     splits={"train": SplitFormat("train.tsv", 2, text_a=0, label=1),
    ...             "dev": SplitFormat("dev.tsv", 2, text_a=0, label=1)},
    ...     label_list=("neg", "pos"), metrics=("accuracy",),
    ...     dev_splits=("dev",))
    >>> task.num_labels
    2
    """

    name: str
    folders: tuple
    splits: dict
    label_list: Optional[tuple] = None
    regression_range: Optional[tuple] = None
    unordered_pair: bool = False
    metrics: tuple = ("accuracy",)
    dev_splits: tuple = ("dev",)
    test_splits: tuple = ()
    submission_files: dict = dataclasses.field(default_factory=dict)
    tfds_name: Optional[str] = None
    tfds_splits: dict = dataclasses.field(default_factory=dict)
    tfds_text_keys: tuple = ()
    tfds_label_names: Optional[tuple] = None
    in_glue_average: bool = True

    def __post_init__(self):
        if (self.label_list is None) == (self.regression_range is None):
            raise ValueError(
                f"Task {self.name!r}: give exactly one of label_list "
                "(classification) or regression_range (regression).")
        if "train" not in self.splits:
            raise ValueError(f"Task {self.name!r} has no 'train' split.")
        for split in self.dev_splits + self.test_splits:
            if split not in self.splits:
                raise ValueError(
                    f"Task {self.name!r}: split {split!r} is not declared.")
        unknown = ([self.metrics] if isinstance(self.metrics, str)
                   else [m for m in self.metrics if m not in METRICS])
        if not self.metrics or unknown:
            raise ValueError(
                f"Task {self.name!r}: metrics must be a tuple of one or "
                f"more of {', '.join(METRICS)}"
                + (f"; not {', '.join(map(repr, unknown))}."
                   if unknown else "."))
        for split in self.dev_splits + ("train",):
            if self.splits[split].label is None:
                raise ValueError(
                    f"Task {self.name!r}: split {split!r} needs a label "
                    "column.")

    @property
    def is_regression(self):
        return self.regression_range is not None

    @property
    def num_labels(self):
        return 1 if self.is_regression else len(self.label_list)

    @property
    def has_pairs(self):
        return self.splits["train"].text_b is not None

    @property
    def head_spec(self):
        return HeadSpec(self.name, self.num_labels, self.is_regression)

    def scale_label(self, value):
        """Regression label -> [0, 1]; the original's (y - min) / max only
        matched this when min was 0."""
        lo, hi = self.regression_range
        return (value - lo) / (hi - lo)

    def unscale(self, value):
        lo, hi = self.regression_range
        return value * (hi - lo) + lo
