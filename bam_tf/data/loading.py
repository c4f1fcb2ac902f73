"""One entry point from a task and split to its examples, whatever the
source."""

from bam_tf.data.tfds_reader import read_tfds_split
from bam_tf.data.tsv_reader import read_tsv_split


def load_split(task, split, glue_dir=None, data_source="tsv",
               double_unordered=True, max_examples=None, tfds_data_dir=None):
    """Examples of one split.

    Args:
        task: a `Task`.
        split: a split name the task declares.
        glue_dir: the GLUE folder (TSV source).
        data_source: "tsv" or "tfds".
        double_unordered: for the train split of an unordered-pair task, add
            each pair in the other order too (the original's MRPC/STS-B).
        max_examples: keep the first N rows (quick runs); applied before
            doubling, so both copies of a kept row stay.
        tfds_data_dir: where TFDS keeps prepared data.
    """
    if data_source == "tsv":
        examples = read_tsv_split(task, split, glue_dir)
    elif data_source == "tfds":
        examples = read_tfds_split(task, split, tfds_data_dir)
    else:
        raise ValueError(f"Unknown data source {data_source!r}.")
    if max_examples is not None:
        examples = examples.head(max_examples)
    if split == "train" and task.unordered_pair and double_unordered:
        examples = examples.doubled()
    return examples
