"""Which folders bam-tf writes and owns (model folders, exports, a
BAM_DIR's own folders), so that no command writes a file of its own into
one."""

import os

from bam_tf.io_utils import not_local


# Files that make a folder a model folder (its .lock too, for an export:
# a start that failed leaves only that; other tools, pytest's temporary
# folders among them, keep a .lock of their own).
MODEL_FOLDER_FILES = ("results.json", "identity.json", "runs.json")
# Files that make a folder an export (`bam_tf.serving`).
EXPORT_FILES = ("bam_tasks.json", "bam_heads.json")
_OWNED_MARKERS = MODEL_FOLDER_FILES + EXPORT_FILES


def owned_folder(path):
    """The nearest folder above `path` (itself included) that bam-tf
    writes and owns: a model folder, an export, or a BAM_DIR's `cache/`;
    None if there is none."""
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        if os.path.isdir(folder) and (
                set(os.listdir(folder)) & set(_OWNED_MARKERS)
                or os.path.basename(folder) == "cache" and os.path.isdir(
                    os.path.join(folder, "features"))):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def check_output_file(flag, path, inputs=()):
    """Refuses an output file `path` (given as `flag`) that is one of the
    command's `inputs` or lies in a folder bam-tf owns; returns a one-line
    reason, or None when it may be written."""
    problem = not_local(path)
    if problem:
        return f"{flag}={path} {problem}"
    real = os.path.realpath(path)
    if any(real == os.path.realpath(p) for p in inputs if p):
        return f"{flag}={path} is also this command's input"
    if os.path.isdir(real):
        return f"{flag}={path} is a folder; give a file path"
    owner = owned_folder(real)
    if owner:
        return (f"{flag}={path} is inside {owner}, a folder bam-tf writes "
                "(a model folder, an export or the feature cache); write "
                "it elsewhere")
    return None
