"""Teacher targets: joined by id, checked against the student's data."""

import numpy as np
import pytest

from bam_tf.data.loading import load_split
from bam_tf.experiment.teachers import TeacherError
from bam_tf.experiment.teachers import teacher_targets
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.outputs import write_predictions
from bam_tf.tasks import get_task

RTE, STS = get_task("rte"), get_task("sts")


def _teacher_file(bam_dir, examples, task, values, trial=1, model="teach",
                  order=None):
    order = np.arange(len(examples)) if order is None else order
    path = _predictions_path(f"{bam_dir}/models/{model}", task.name, "train",
                            trial)
    write_predictions(path, task, examples, examples.eids[order],
                      values[order])
    return path


def test_join_by_id_in_any_order_and_ensemble(tiny_glue, tmp_path):
    examples = load_split(RTE, "train", tiny_glue)
    n = len(examples)
    logits_1 = np.stack([np.arange(n), -np.arange(n)], 1).astype(np.float32)
    logits_2 = logits_1 + 10
    shuffled = np.random.default_rng(0).permutation(n)
    _teacher_file(tmp_path, examples, RTE, logits_1, 1, order=shuffled)
    _teacher_file(tmp_path, examples, RTE, logits_2, 2, order=shuffled[::-1])
    np.testing.assert_array_equal(
        teacher_targets(str(tmp_path), "teach", RTE, examples, (1,)),
        logits_1)
    np.testing.assert_allclose(
        teacher_targets(str(tmp_path), "teach", RTE, examples, (1, 2)),
        logits_1 + 5)
    # A student on a subset finds its rows by id.
    subset = load_split(RTE, "train", tiny_glue, max_examples=7)
    np.testing.assert_array_equal(
        teacher_targets(str(tmp_path), "teach", RTE, subset), logits_1[:7])


def test_regression_targets_are_scaled(tiny_glue, tmp_path):
    examples = load_split(STS, "train", tiny_glue)
    predictions = np.linspace(0, 5, len(examples)).astype(np.float32)
    _teacher_file(tmp_path, examples, STS, predictions)
    np.testing.assert_allclose(
        teacher_targets(str(tmp_path), "teach", STS, examples),
        predictions / 5.0, rtol=1e-6)


def test_mismatches_name_the_file(tiny_glue, tmp_path):
    examples = load_split(RTE, "train", tiny_glue)
    n = len(examples)
    logits = np.zeros([n, 2], np.float32)
    bam = str(tmp_path)
    path = _teacher_file(bam, examples, RTE, logits, model="subset",
                         order=np.arange(n - 3))
    with pytest.raises(TeacherError, match=f"{path}: no targets for 3 of"):
        teacher_targets(bam, "subset", RTE, examples)

    mnli_like = get_task("mnli")
    path = _predictions_path(f"{bam}/models/labels", "rte", "train", 1)
    write_predictions(path, mnli_like, examples, examples.eids,
                      np.zeros([n, 3], np.float32))
    with pytest.raises(TeacherError, match="made for task 'mnli'"):
        teacher_targets(bam, "labels", RTE, examples)

    path = _predictions_path(f"{bam}/models/regr", "rte", "train", 1)
    write_predictions(path, STS, examples, examples.eids,
                      np.zeros([n], np.float32))
    with pytest.raises(TeacherError, match="made for task 'sts'"):
        teacher_targets(bam, "regr", RTE, examples)

    # Same task name, other label set: a user task re-registered.
    from dataclasses import replace
    three = replace(RTE, label_list=("a", "b", "c"))
    path = _teacher_file(bam, examples, three, np.zeros([n, 3], np.float32),
                         model="three")
    with pytest.raises(TeacherError, match=r"label list \['a', 'b', 'c'\] "
                       "differs"):
        teacher_targets(bam, "three", RTE, examples)

    as_regression = replace(RTE, label_list=None, regression_range=(0, 1))
    _teacher_file(bam, examples, as_regression, np.zeros([n], np.float32),
                  model="kind")
    with pytest.raises(TeacherError, match="holds regression outputs but "
                       "task 'rte' is classification"):
        teacher_targets(bam, "kind", RTE, examples)

    other = load_split(RTE, "dev", tiny_glue)  # other texts, same ids 0..23
    path = _teacher_file(bam, other, RTE,
                         np.zeros([len(other), 2], np.float32), model="other")
    subset = load_split(RTE, "train", tiny_glue, max_examples=5)
    with pytest.raises(TeacherError, match="5 example ids hold other texts"):
        teacher_targets(bam, "other", RTE, subset)

    with pytest.raises(TeacherError, match="no model folder"):
        teacher_targets(bam, "nobody", RTE, examples)
    with pytest.raises(TeacherError, match="trial 2: .*file not found"):
        teacher_targets(bam, "subset", RTE, examples, (2,))


def test_corrupt_teacher_file(tiny_glue, tmp_path):
    examples = load_split(RTE, "train", tiny_glue)
    path = _teacher_file(tmp_path, examples, RTE,
                         np.zeros([len(examples), 2], np.float32))
    with open(path, "r+b") as f:
        f.truncate(100)
    with pytest.raises(TeacherError, match=f"{path}: unreadable predictions "
                       "file.*: restore it from a copy, or train that trial "
                       r"again \(delete its entry in the folder's "
                       r"results.json"):
        teacher_targets(str(tmp_path), "teach", RTE, examples)


def _predictions_path(model_dir, task_name, split, trial):
    return ModelDir.at(model_dir).predictions_path(task_name, split, trial)
