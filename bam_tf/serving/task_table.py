"""bam_tasks.json, written beside an export: what a client needs to know of
each task. Reading it loads no TensorFlow."""

import json
import os

from bam_tf.errors import BamError

TASKS_FILE = "bam_tasks.json"


class ExportError(BamError):
    pass


def task_table(tasks):
    """{task name: its labels, regression range, and whether it reads a
    pair of texts}."""
    return {t.name: {"labels": list(t.label_list) if t.label_list else None,
                     "regression_range": list(t.regression_range)
                     if t.regression_range else None,
                     "pair": t.has_pairs} for t in tasks}


def read_task_table(export_dir):
    """The tasks of an export, {name: entry of `task_table`}."""
    path = os.path.join(export_dir, TASKS_FILE)
    if not os.path.exists(path):
        raise ExportError(f"{path} not found: is {export_dir} an export of "
                          "scripts/export.py?")
    try:
        with open(path, encoding="utf-8") as f:
            tasks = json.load(f)["tasks"]
        for name, entry in tasks.items():
            entry["pair"], entry["labels"]  # noqa: B018 (both must be there)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"{path}: damaged task table ({type(e).__name__}: "
                          f"{e}); export the model again.") from None
    return tasks
