"""One registry of tasks, looked up by name."""

from bam_tf.errors import BamError

_REGISTRY = {}


class UnknownTaskError(BamError):
    pass


def register_task(task, overwrite=False):
    """Adds a `Task`; user-defined tasks are registered the same way
    (README, "Your own task"). Returns the task.

    Example:
    >>> from bam_tf.tasks.task import SplitFormat, Task
    >>> reviews = register_task(Task(
    ...     name="reviews_example", folders=("reviews",),
    ...     splits={"train": SplitFormat("train.tsv", 2, text_a=0, label=1),
    ...             "dev": SplitFormat("dev.tsv", 2, text_a=0, label=1)},
    ...     label_list=("neg", "pos")), overwrite=True)
    >>> get_task("reviews_example").num_labels
    2
    """
    if task.name in _REGISTRY and not overwrite:
        raise ValueError(
            f"A task named {task.name!r} is already registered; pass "
            "overwrite=True to replace it.")
    _REGISTRY[task.name] = task
    return task


def get_task(name):
    """The registered task `name`; an unknown name is an error listing the
    known ones.

    Example:
    >>> get_task("rte").label_list
    ('entailment', 'not_entailment')
    """
    if name not in _REGISTRY:
        raise UnknownTaskError(
            f"Unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}. "
            "Define your own with bam_tf.tasks.Task and register_task "
            "(README, 'Your own task').")
    return _REGISTRY[name]


def get_tasks(names):
    return [get_task(n) for n in names]


def task_names():
    return sorted(_REGISTRY)
