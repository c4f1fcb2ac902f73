"""Atomic writes: a reader never sees half a file, and the file gets the
permissions a plain `open` would give it (0644 under umask 022), so that a
team sharing a BAM_DIR can read each other's runs."""

import contextlib
import errno
import json
import os
import re
import tempfile

import numpy as np


_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def not_local(path):
    """Why `path` cannot be one of bam-tf's folders or files (a reason
    to follow "--flag=path", no full stop), or None: a URL
    (gs://, s3://) is refused, since Python's file operations would take
    it for a relative path and write a local folder named "gs:", where a
    Cloud TPU user would look for it in the bucket.

    Example:
    >>> not_local("/data/bam") is None
    True
    >>> not_local("gs://bucket/bam")[:20]
    'is a URL (gs://), wh'
    """
    match = _URL.match(path or "")
    if not match:
        return None
    scheme = match.group(1)
    return (f"is a URL ({scheme}://), which bam-tf cannot use: it reads and "
            "writes its folders with local file operations (locks, atomic "
            f"renames), and would write a local folder named {scheme}: "
            "instead. Pass a local path, and copy to the bucket when "
            "the run is done")


def _umask():
    """The process's umask, read without changing it where Linux tells it
    (setting it to read it back would race with other threads' files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# What a write alone raises without naming its file.
_WRITE_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
    """Writes to a temporary file beside `path`, renamed over it on success;
    on failure the old file (if any) is left as it was. A fault of the
    write (a full disk, a read-only folder) names `path`, not the
    temporary file nor nothing."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp, in_block = None, False
    try:
        fd, tmp = tempfile.mkstemp(
            dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with os.fdopen(fd, mode, **kwargs) as f:
            # mkstemp makes the file private (0600) whatever the umask;
            # a filesystem that refuses chmod keeps its own modes.
            with contextlib.suppress(OSError):
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            in_block = True
            yield f
            in_block = False
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        # mkstemp, the flush, the close and the rename name the temporary
        # file or none; in the caller's block only a write fault is
        # surely this file's (it may read others there).
        if isinstance(e, OSError) and e.errno is not None and (
                not in_block or (e.errno in _WRITE_FAULTS
                                 and e.filename is None)):
            raise OSError(e.errno, e.strerror, path) from e
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
