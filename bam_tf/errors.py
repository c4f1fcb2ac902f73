"""The one base class of every error that means bad input or a damaged
file, not a bug. Scripts print its message (which names the file, line or
flag and the way out) without a stack trace.

A leaf module: it imports nothing, so a script can catch `BamError` without
loading TensorFlow.
"""


class BamError(ValueError):
    """Bad input, a damaged file, or a run that cannot go on; the message
    says which file or flag and what to do."""


class RunError(BamError):
    """A run that cannot start or go on as asked (its folder, its inputs,
    its devices)."""
