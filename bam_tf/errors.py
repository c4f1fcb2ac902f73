"""The one base class of every error that means bad input or a damaged
file, not a bug. Scripts print its message (which names the file, line or
flag and the way out) without a stack trace.

A leaf module: it imports nothing but the standard library, so a script
can catch `BamError` without loading TensorFlow.
"""

import os


class BamError(ValueError):
    """Bad input, a damaged file, or a run that cannot go on; the message
    says which file or flag and what to do."""


class RunError(BamError):
    """A run that cannot start or go on as asked (its folder, its inputs,
    its devices)."""


class Interrupted(BaseException):
    """SIGTERM (what a cluster scheduler sends before it kills a job),
    raised in the main thread like Ctrl-C's KeyboardInterrupt."""


# errno -> (what happened, what to do).
_OS_FAULTS = {
    1: ("permission denied", "give this user write access there, or pass "
        "another folder"),
    13: ("permission denied", "give this user write access there, or pass "
         "another folder"),
    30: ("read-only file system", "pass a folder on a writable file "
         "system"),
    28: ("no space left on the device", "free some space and run the same "
         "command again: it resumes from the last checkpoint"),
    122: ("disk quota exceeded", "free some space and run the same command "
          "again: it resumes from the last checkpoint"),
    20: ("a file stands where a folder is expected", "pass a folder, or "
         "move the file away"),
    21: ("a folder stands where a file is expected", "pass a file path"),
}
# The same faults as TensorFlow's C++ file system reports them (an
# OpError's message, no errno).
_TF_FAULTS = {
    "No space left on device": 28,
    "Read-only file system": 30,
    "Permission denied": 13,
    "Disk quota exceeded": 122,
    "Not a directory": 20,
}


def os_fault_message(error):
    """A one-line message for an operating-system fault (an `OSError`, or
    a TensorFlow error whose text names one), naming the path and what to
    do; None for anything else."""
    number = getattr(error, "errno", None) if isinstance(
        error, OSError) else None
    text = str(error).splitlines()[0] if str(error) else ""
    if number is None and type(error).__module__.startswith("tensorflow"):
        number = next((n for phrase, n in _TF_FAULTS.items()
                       if phrase in str(error)), None)
    if number not in _OS_FAULTS:
        return None
    what, todo = _OS_FAULTS[number]
    where = getattr(error, "filename", None) if isinstance(
        error, OSError) else None
    # Without a file, the text may still name one (h5py's does); when it
    # is only "[Errno 28] No space left on device", it would repeat `what`.
    if not where and text != f"[Errno {number}] {os.strerror(number)}":
        where = text
    return f"{where}: {what}; {todo}." if where else f"{what}; {todo}."
