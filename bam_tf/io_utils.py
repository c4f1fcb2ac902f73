"""Atomic writes: a reader never sees half a file."""

import contextlib
import json
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
    """Writes to a temporary file beside `path`, renamed over it on success;
    on failure the old file (if any) is left as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path, value):
    with atomic_open(path) as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def atomic_write_text(path, text):
    with atomic_open(path) as f:
        f.write(text)


def atomic_save_npz(path, **arrays):
    """np.savez to a temporary name, then rename (never pickled objects)."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"{path}: array {name!r} would need a pickle.")
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
