"""Reading and writing a trial's checkpoints and weights, so that a
damaged file costs at most the steps since the one before it."""

import glob
import os

import tensorflow as tf
from absl import logging

from bam_tf.errors import RunError


def _unreadable(path):
    """Why the checkpoint at `path` cannot be restored, or None: every
    tensor is read, so a truncated data file is found before any variable
    is overwritten."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    # The reader is a C++ binding: a short file surfaces as any of these.
    except (tf.errors.OpError, ValueError, OSError, IndexError, KeyError,
            RuntimeError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return None


def _checkpoints_newest_first(directory):
    try:
        # A damaged list is ignored (with TensorFlow's warning naming it).
        state = tf.train.get_checkpoint_state(directory)
        paths = list(state.all_model_checkpoint_paths) if state else []
    except (tf.errors.OpError, ValueError) as e:
        logging.warning("%s: unreadable checkpoint list (%s); looking for "
                        "checkpoint files instead.",
                        os.path.join(directory, "checkpoint"), e)
        paths = []
    if not paths:
        paths = [p[:-len(".index")] for p in glob.glob(
            os.path.join(directory, "ckpt-*.index"))]
    number = lambda p: int(p.rsplit("-", 1)[1]) if p.rsplit(
        "-", 1)[1].isdigit() else -1
    return sorted(paths, key=number, reverse=True)


def restore_newest_readable(checkpoint, directory, trial):
    """Restores the newest checkpoint of `directory` that reads back whole;
    a damaged newer one is skipped with a warning naming it. Returns the
    path restored, or None (none, or none readable: the trial starts
    again, and ends as an uninterrupted one would)."""
    paths = _checkpoints_newest_first(directory)
    for path in paths:
        problem = _unreadable(path)
        if problem:
            logging.warning("trial %d: checkpoint %s is damaged (%s); "
                            "trying the one before it.", trial, path,
                            problem)
            continue
        try:
            checkpoint.restore(path).assert_consumed()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise RunError(
                f"{path}: the checkpoint does not fit this run's model "
                f"({type(e).__name__}: {str(e).splitlines()[0]}). Delete "
                f"{directory} to start trial {trial} again.") from None
        return path
    if paths:
        logging.warning("trial %d: no readable checkpoint in %s; the trial "
                        "starts again from step 0.", trial, directory)
    return None


def load_weights(model, path):
    """`model.load_weights(path)`, a damaged or foreign file named."""
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        raise RunError(
            f"{path}: unreadable or foreign weights file "
            f"({type(e).__name__}: {e}). Retrain that trial: delete the "
            "file and the trial's entry in results.json, then run the same "
            "command again.") from None


def save_weights(model, path):
    """`model.save_weights(path)`, atomically: a reader never sees half a
    file, and a kill leaves the old one."""
    tmp = path[:-len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, path)
