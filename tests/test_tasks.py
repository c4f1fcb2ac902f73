import os

import numpy as np
import pytest

from bam_tf.data.loading import load_split
from bam_tf.tasks import SplitFormat
from bam_tf.tasks import Task
from bam_tf.tasks import UnknownTaskError
from bam_tf.tasks import get_task
from bam_tf.tasks import register_task

from conftest import SHARED_GLUE
from conftest import write_tsv

# Canonical GLUE sizes (rows, before doubling).
GLUE_SIZES = {
    ("cola", "train"): 8551, ("cola", "dev"): 1043, ("cola", "test"): 1063,
    ("sst", "train"): 67349, ("sst", "dev"): 872, ("sst", "test"): 1821,
    ("mrpc", "train"): 3668, ("mrpc", "dev"): 408, ("mrpc", "test"): 1725,
    ("sts", "train"): 5749, ("sts", "dev"): 1500, ("sts", "test"): 1379,
    ("qqp", "train"): 363846, ("qqp", "dev"): 40430, ("qqp", "test"): 390965,
    ("mnli", "train"): 392702, ("mnli", "dev_matched"): 9815,
    ("mnli", "dev_mismatched"): 9832, ("mnli", "test_matched"): 9796,
    ("mnli", "test_mismatched"): 9847, ("mnli", "diagnostic"): 1104,
    ("qnli", "train"): 104743, ("qnli", "dev"): 5463, ("qnli", "test"): 5463,
    ("rte", "train"): 2490, ("rte", "dev"): 277, ("rte", "test"): 3000,
    ("wnli", "train"): 635, ("wnli", "dev"): 71, ("wnli", "test"): 146,
}


def _present(task, split):
    fmt = task.splits[split]
    folders = (fmt.folder,) if fmt.folder else task.folders
    return any(os.path.isfile(os.path.join(SHARED_GLUE, f, fmt.file))
               for f in folders)


@pytest.mark.parametrize("task_name, split", sorted(GLUE_SIZES))
def test_real_glue_counts(task_name, split):
    task = get_task(task_name)
    if not _present(task, split):
        pytest.skip(f"{task_name} {split} not in {SHARED_GLUE}")
    examples = load_split(task, split, SHARED_GLUE)
    rows = GLUE_SIZES[(task_name, split)]
    doubled = split == "train" and task.unordered_pair
    assert len(examples) == (2 * rows if doubled else rows)
    assert len(set(examples.eids.tolist())) == len(examples)
    np.testing.assert_array_equal(examples.eids[:rows], np.arange(rows))
    if doubled:
        np.testing.assert_array_equal(examples.eids[rows:],
                                      np.arange(rows) + rows)
        assert examples.text_a[rows] == examples.text_b[0]


def test_registry_lookup_and_unknown_name():
    assert get_task("sts").is_regression
    assert get_task("mnli").num_labels == 3
    assert get_task("mnli").submission_files["diagnostic"] == "AX.tsv"
    assert get_task("mnli").dev_splits == ("dev_matched", "dev_mismatched")
    with pytest.raises(UnknownTaskError, match="Unknown task 'glu'.*rte"):
        get_task("glu")


def test_a_users_own_tsv_tasks(tmp_path):
    # The README's example: one small definition per task.
    reviews = register_task(Task(
        name="test_reviews", folders=("reviews",),
        splits={"train": SplitFormat("train.tsv", 2, text_a=0, label=1),
                "dev": SplitFormat("dev.tsv", 2, text_a=0, label=1)},
        label_list=("neg", "pos"), metrics=("accuracy", "f1")))
    ratings = register_task(Task(
        name="test_ratings", folders=("ratings",),
        splits={"train": SplitFormat("train.tsv", 3, 0, 1, label=2,
                                     header=False),
                "dev": SplitFormat("dev.tsv", 3, 0, 1, label=2,
                                   header=False)},
        regression_range=(1.0, 10.0), unordered_pair=True,
        metrics=("pearson",)))
    write_tsv(f"{tmp_path}/reviews/train.tsv", ["text", "label"],
              [["great film", "pos"], ["dull", "neg"]])
    write_tsv(f"{tmp_path}/ratings/train.tsv", None,
              [["a", "b", "2.5"], ["c", "d", "10"]])
    examples = load_split(reviews, "train", str(tmp_path))
    assert examples.labels.tolist() == [1, 0]
    examples = load_split(ratings, "train", str(tmp_path))
    assert examples.labels.tolist() == [2.5, 10.0, 2.5, 10.0]
    assert examples.eids.tolist() == [0, 1, 2, 3]
    assert ratings.scale_label(10.0) == 1.0 and ratings.unscale(0.0) == 1.0
    with pytest.raises(ValueError, match="already registered"):
        register_task(reviews)


def test_task_definition_errors():
    with pytest.raises(ValueError, match="exactly one of"):
        Task(name="x", folders=("x",),
             splits={"train": SplitFormat("t.tsv", 2, 0, label=1)})
    with pytest.raises(ValueError, match="needs a label"):
        Task(name="x", folders=("x",), label_list=("0", "1"), dev_splits=(),
             splits={"train": SplitFormat("t.tsv", 2, 0)})
