"""Reading and writing a trial's checkpoints and weights, so that a
damaged file costs at most the steps since the one before it."""

import contextlib
import errno
import glob
import os
import shutil

import numpy as np

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
    file, and a kill leaves the old one. Refused before writing where the
    disk cannot hold the file (h5py ends the process with a segmentation
    fault when a write fails for lack of space), and the temporary file is
    removed on any failure."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    needed = int(_WEIGHTS_MARGIN * sum(
        int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
        for v in model.weights))
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"needs about {needed >> 20} MiB, "
                      f"{free >> 20} MiB free", path)
    tmp = path[:-len(".weights.h5")] + ".tmp.weights.h5"
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# HDF5's own bookkeeping on top of the raw tensor bytes, with room to spare.
_WEIGHTS_MARGIN = 1.2
