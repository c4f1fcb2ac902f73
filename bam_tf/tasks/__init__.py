"""Tasks: declarative definitions and the registry."""

from bam_tf.tasks.task import HeadSpec, SplitFormat, Task
from bam_tf.tasks.registry import (
    UnknownTaskError, get_task, get_tasks, register_task, task_names)
from bam_tf.tasks import glue  # noqa: F401  (registers the GLUE tasks)
