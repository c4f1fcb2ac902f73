"""Teacher targets: a teacher's train-set predictions, checked and joined onto
the student's training examples by example id."""

import os

import numpy as np
from absl import logging

from bam_tf.errors import BamError
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.model_dir import ModelDirError
from bam_tf.store.outputs import OutputFileError
from bam_tf.store.outputs import read_predictions
from bam_tf.store.outputs import text_hashes


class TeacherError(BamError):
    pass


def teacher_targets(bam_dir, teacher_model, task, examples, trials=(1,)):
    """The teacher's outputs for every training example, in `examples`'
    order: logits [n, num_labels] (classification) or scaled predictions
    [n] (regression). Several trials give an ensemble: the mean.

    Every mismatch is an error naming the teacher file: missing ids, another
    label set, regression against classification, other texts under the
    same ids (a file made from other data).
    """
    folder = ModelDir(bam_dir, teacher_model)
    model_dir = folder.path
    if not folder.exists():
        raise TeacherError(
            f"Teacher {teacher_model!r} for task {task.name!r}: no model "
            f"folder {model_dir}; train it first (or use "
            "scripts/born_again.py, which trains missing teachers).")
    hashes = text_hashes(examples)
    aligned = []
    for trial in trials:
        path = folder.predictions_path(task.name, "train", trial)
        try:
            arrays = read_predictions(path)
        except OutputFileError as e:
            raise TeacherError(
                f"Teacher {teacher_model!r}, task {task.name!r}, trial "
                f"{trial}: {e} (teachers write train predictions for their "
                "first n_writes_distill trials).") from None
        aligned.append(_align(path, arrays, task, examples, hashes))
    return np.mean(aligned, axis=0).astype(np.float32)


def _align(path, arrays, task, examples, hashes):
    if str(arrays["task"]) != task.name:
        raise TeacherError(
            f"{path}: made for task {str(arrays['task'])!r}, not "
            f"{task.name!r}.")
    is_regression = "predictions" in arrays
    if is_regression != task.is_regression:
        kind = lambda r: "regression" if r else "classification"
        raise TeacherError(
            f"{path}: holds {kind(is_regression)} outputs but task "
            f"{task.name!r} is {kind(task.is_regression)}.")
    if not task.is_regression:
        labels = tuple(arrays["label_list"].tolist())
        if labels != tuple(task.label_list):
            raise TeacherError(
                f"{path}: label list {list(labels)} differs from task "
                f"{task.name!r}'s {list(task.label_list)}.")
    position = {eid: i for i, eid in enumerate(arrays["eid"].tolist())}
    missing = [e for e in examples.eids.tolist() if e not in position]
    if missing:
        raise TeacherError(
            f"{path}: no targets for {len(missing)} of the student's "
            f"{len(examples)} training examples (ids {missing[:5]}...); was "
            "the teacher trained on other data, other max_train_examples, "
            "or without doubling unordered pairs?")
    rows = np.array([position[e] for e in examples.eids.tolist()])
    differ = np.nonzero(arrays["text_hash"][rows] != hashes)[0]
    if len(differ):
        raise TeacherError(
            f"{path}: {len(differ)} example ids hold other texts than the "
            f"student's data (first: id {int(examples.eids[differ[0]])}); "
            "the file was made from other data.")
    if task.is_regression:
        return task.scale_label(arrays["predictions"][rows])
    return arrays["logits"][rows]


def warn_if_other_encoder(config, teacher_model):
    """Born-again students share their teachers' architecture (paper
    section 3); another encoder is allowed, but said."""
    try:
        teacher = ModelDir(config.bam_dir, teacher_model).read_saved_config()
    except ModelDirError:
        return
    if teacher is None:
        return
    mine = (config.debug, config.pretrained_model)
    theirs = (teacher.get("debug"), teacher.get("pretrained_model"))
    if mine[0] != theirs[0] or (not mine[0] and os.path.basename(
            str(mine[1]).rstrip("/")) != os.path.basename(
                str(theirs[1]).rstrip("/"))):
        logging.warning(
            "Teacher %s was trained from encoder %s, the student %s uses %s: "
            "not born-again distillation (same architecture) but "
            "distillation across encoders.", teacher_model,
            "debug" if theirs[0] else theirs[1], config.model_name,
            "debug" if mine[0] else mine[1])
