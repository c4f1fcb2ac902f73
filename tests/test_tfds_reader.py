"""TFDS as a second source, offline through tfds.testing.mock_data."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bam_tf.data.examples import DataError
from bam_tf.data.loading import load_split
from bam_tf.tasks import get_task


def _fake_glue(idx, labels, keys=("sentence1", "sentence2")):
    def as_dataset(self, split, *args, **kwargs):
        n = len(idx)
        element = {"idx": tf.constant(idx, tf.int32),
                   "label": tf.constant(labels)}
        for k in keys:
            element[k] = tf.constant([f"{k} {i} {split}" for i in idx])
        return tf.data.Dataset.from_tensor_slices(element).take(n)
    return as_dataset


def test_random_mock_data_loads():
    with tfds.testing.mock_data(num_examples=8):
        examples = load_split(get_task("rte"), "dev", data_source="tfds")
    assert len(examples) == 8 and examples.labels.dtype == np.int32


def test_ids_labels_and_doubling_from_tfds():
    # TFDS's MNLI order is entailment, neutral, contradiction; the task's
    # label_list (the original's) is contradiction, entailment, neutral.
    with tfds.testing.mock_data(as_dataset_fn=_fake_glue(
            [2, 0, 1], [0, 1, 2], ("premise", "hypothesis"))):
        mnli = load_split(get_task("mnli"), "dev_mismatched",
                          data_source="tfds")
    assert mnli.eids.tolist() == [0, 1, 2]  # sorted by idx
    assert [get_task("mnli").label_list[i] for i in mnli.labels] == [
        "neutral", "contradiction", "entailment"]
    assert mnli.text_a[0] == "premise 0 validation_mismatched"

    with tfds.testing.mock_data(as_dataset_fn=_fake_glue(
            [0, 1], [4.0, 0.5])):
        sts = load_split(get_task("sts"), "train", data_source="tfds")
    assert sts.eids.tolist() == [0, 1, 2, 3]
    assert sts.labels.tolist() == [4.0, 0.5, 4.0, 0.5]
    assert sts.text_a[2] == sts.text_b[0]


def test_data_not_prepared_is_an_error_not_a_download(tmp_path,
                                                      monkeypatch):
    # bam-tf downloads nothing at run time (README, "Data").
    tried = []
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        lambda self, *args, **kwargs: tried.append(self))
    with pytest.raises(DataError, match=(
            f"TFDS glue/rte:validation could not be loaded for task 'rte' "
            f"from {tmp_path} .*could not find data.*"
            f"tfds build glue/rte --data_dir={tmp_path}`")):
        load_split(get_task("rte"), "dev", data_source="tfds",
                   tfds_data_dir=str(tmp_path))
    assert not tried


def test_repeated_ids_and_bad_labels_are_errors():
    with tfds.testing.mock_data(as_dataset_fn=_fake_glue([0, 0], [0, 1])):
        with pytest.raises(DataError, match="idx 0 occurs more than once"):
            load_split(get_task("rte"), "train", data_source="tfds")
    with tfds.testing.mock_data(as_dataset_fn=_fake_glue([0, 1], [0, 5])):
        with pytest.raises(DataError, match=r"idx 1: label 5 is not one"):
            load_split(get_task("rte"), "train", data_source="tfds")


def test_a_users_task_with_a_tfds_name_loads():
    """A task outside GLUE's table: its label_list is TFDS's order."""
    from bam_tf.tasks import SplitFormat, Task, register_task
    task = register_task(Task(
        name="my_pairs", folders=("my_pairs",),
        splits={"train": SplitFormat("train.tsv", 3, 0, 1, label=2),
                "dev": SplitFormat("dev.tsv", 3, 0, 1, label=2)},
        label_list=("no", "yes"), tfds_name="glue/rte",
        tfds_text_keys=("sentence1", "sentence2")), overwrite=True)
    with tfds.testing.mock_data(as_dataset_fn=_fake_glue([1, 0, 2],
                                                         [1, 0, 1])):
        examples = load_split(task, "train", data_source="tfds")
    assert examples.eids.tolist() == [0, 1, 2]
    assert [task.label_list[i] for i in examples.labels] == ["no", "yes",
                                                             "yes"]
