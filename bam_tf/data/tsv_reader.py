"""Reads GLUE-layout TSV files into `Examples`.

Quoting is off (some GLUE rows hold unbalanced `"`), a UTF-8 BOM before the
header is dropped (MRPC), and every row must have the declared number of
fields: a bad row is an error naming the file and line, never skipped.
"""

import os

import numpy as np

from bam_tf.data.examples import DataError
from bam_tf.data.examples import Examples


def find_task_folder(task, glue_dir, folder=None):
    """The task's folder under glue_dir: the standard name or the original's
    lower-case one."""
    candidates = (folder,) if folder else task.folders
    for name in candidates:
        path = os.path.join(glue_dir, name)
        if os.path.isdir(path):
            return path
    if not os.path.isdir(glue_dir):
        raise DataError(
            f"{glue_dir}: " + ("a file, not a folder"
                               if os.path.exists(glue_dir)
                               else "no such folder") +
            "; --glue_dir is the folder that holds the task folders "
            f"({' or '.join(candidates)} for {task.name!r}).")
    raise DataError(
        f"Task {task.name!r}: no folder {' or '.join(candidates)} under "
        f"{glue_dir!r}.")


def split_path(task, split, glue_dir):
    fmt = task.splits[split]
    return os.path.join(find_task_folder(task, glue_dir, fmt.folder), fmt.file)


def read_tsv_split(task, split, glue_dir):
    """Reads one split of a task from its TSV file."""
    if split not in task.splits:
        raise DataError(
            f"Task {task.name!r} has no split {split!r}; it has "
            f"{sorted(task.splits)}.")
    fmt = task.splits[split]
    path = split_path(task, split, glue_dir)
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found ({task.name} {split}).")
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # a final newline ends the last row; it is no row
    first_row_line = 2 if fmt.header else 1
    if not lines:
        raise DataError(
            f"{path}: the file is empty; expected "
            f"{'a header and ' if fmt.header else ''}rows of "
            f"{fmt.num_fields} tab-separated fields.")

    label_index = None
    if fmt.label is not None and not task.is_regression:
        label_index = {label: i for i, label in enumerate(task.label_list)}
    text_a, text_b, labels = [], [], []
    for line_no, line in enumerate(lines[first_row_line - 1:],
                                   start=first_row_line):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}, line {line_no}: not valid UTF-8 ({e.reason} at "
                f"byte {e.start}); GLUE files are UTF-8.") from None
        fields = text.rstrip("\r").split("\t")
        if fields == [""] and fmt.num_fields > 1:
            raise DataError(
                f"{path}, line {line_no}: an empty line; expected "
                f"{fmt.num_fields} tab-separated fields (remove the "
                "line).")
        if len(fields) != fmt.num_fields:
            raise DataError(
                f"{path}, line {line_no}: expected {fmt.num_fields} "
                f"tab-separated fields, found {len(fields)}.")
        text_a.append(fields[fmt.text_a])
        if fmt.text_b is not None:
            text_b.append(fields[fmt.text_b])
        if fmt.label is not None:
            value = fields[fmt.label]
            if label_index is not None:
                if value not in label_index:
                    raise DataError(
                        f"{path}, line {line_no}: unknown label {value!r}; "
                        f"expected one of {list(task.label_list)}.")
                labels.append(label_index[value])
            else:
                labels.append(_regression_label(task, value, path, line_no))
    if not text_a:
        raise DataError(f"{path}: the file has a header but no rows.")

    if fmt.label is None:
        label_array = None
    elif task.is_regression:
        label_array = np.asarray(labels, dtype=np.float32)
    else:
        label_array = np.asarray(labels, dtype=np.int32)
    return Examples(
        task=task.name, split=split,
        eids=np.arange(len(text_a), dtype=np.int64),
        text_a=text_a, text_b=text_b if fmt.text_b is not None else None,
        labels=label_array, num_rows=len(text_a), source=path)


def _regression_label(task, value, path, line_no):
    lo, hi = task.regression_range
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not lo <= number <= hi:  # also catches NaN
        raise DataError(
            f"{path}, line {line_no}: label {value!r} is not a number in "
            f"[{lo}, {hi}].")
    return number
