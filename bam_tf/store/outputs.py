"""Written outputs: predictions keyed by example id (the targets of later
students) and GLUE leaderboard files. Safe formats only (npz without
pickles, TSV), every file written atomically."""

import hashlib
import os
import zipfile

import numpy as np

from bam_tf.errors import BamError
from bam_tf.io_utils import atomic_open
from bam_tf.io_utils import atomic_save_npz


class OutputFileError(BamError):
    pass


def text_hashes(examples):
    """A 63-bit hash of each example's texts: lets a student check that a
    teacher's targets were made from the same examples, id by id."""
    texts_b = examples.text_b or [""] * len(examples)
    hashes = np.empty(len(examples), np.int64)
    for i, (a, b) in enumerate(zip(examples.text_a, texts_b)):
        digest = hashlib.blake2b(f"{a}\t{b}".encode(), digest_size=8).digest()
        hashes[i] = int.from_bytes(digest, "little") >> 1
    return hashes


def write_predictions(path, task, examples, eids, outputs):
    """Predictions of one split, keyed by example id.

    Arrays: `eid`; `logits` [n, num_labels] (classification) or
    `predictions` [n] on the label scale (regression); `task`,
    `label_list`, `num_examples` and `text_hash` so that a reader can check
    the file belongs to its data.
    """
    order = np.argsort(eids, kind="stable")
    eids = np.asarray(eids)[order]
    outputs = np.asarray(outputs)[order]
    hash_by_eid = dict(zip(examples.eids.tolist(),
                           text_hashes(examples).tolist()))
    arrays = {
        "eid": eids.astype(np.int64),
        "task": np.array(task.name),
        "label_list": np.array(task.label_list or [], dtype=str),
        "num_examples": np.array(len(eids), np.int64),
        "text_hash": np.array([hash_by_eid[e] for e in eids.tolist()],
                              np.int64),
    }
    if task.is_regression:
        arrays["predictions"] = outputs.astype(np.float32)
    else:
        arrays["logits"] = outputs.astype(np.float32)
    atomic_save_npz(path, **arrays)


def read_predictions(path):
    """Reads a predictions file; a damaged one is an error naming it."""
    if not os.path.isfile(path):
        raise OutputFileError(f"{path}: file not found.")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise OutputFileError(
            f"{path}: unreadable predictions file ({type(e).__name__}: "
            f"{e}); it may be truncated or corrupt: restore it from a "
            "copy, or train that trial again (delete its entry in the "
            "folder's results.json, then run the folder's command "
            "again).") from None
    required = {"eid", "task", "label_list", "num_examples", "text_hash"}
    missing = required - set(arrays)
    if missing or not ({"logits", "predictions"} & set(arrays)):
        raise OutputFileError(
            f"{path}: not a bam-tf predictions file (missing "
            f"{sorted(missing) or ['logits/predictions']}).")
    n = int(arrays["num_examples"])
    values = arrays.get("logits", arrays.get("predictions"))
    if not (len(arrays["eid"]) == len(arrays["text_hash"]) == len(values)
            == n):
        raise OutputFileError(
            f"{path}: inconsistent array lengths (num_examples {n}, eid "
            f"{len(arrays['eid'])}, values {len(values)}).")
    if not np.all(np.isfinite(values)):
        raise OutputFileError(f"{path}: holds NaN or infinite values.")
    return arrays


def write_glue_submission(path, task, eids, outputs):
    """A GLUE leaderboard file: `index<TAB>prediction`, one row per test
    example in file order; label names (NLI) or 0/1, STS-B scores in
    [0, 5]."""
    order = np.argsort(eids, kind="stable")
    eids = np.asarray(eids)[order]
    outputs = np.asarray(outputs)[order]
    with atomic_open(path) as f:
        f.write("index\tprediction\n")
        for eid, out in zip(eids.tolist(), outputs):
            if task.is_regression:
                lo, hi = task.regression_range
                f.write(f"{eid}\t{float(np.clip(out, lo, hi)):.3f}\n")
            else:
                f.write(f"{eid}\t{task.label_list[int(np.argmax(out))]}\n")
