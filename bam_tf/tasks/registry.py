"""One registry of tasks, looked up by name."""

from bam_tf.errors import BamError

_REGISTRY = {}


class UnknownTaskError(BamError):
    pass


def register_task(task, overwrite=False):
    """Adds a `Task`; user-defined tasks are registered the same way."""
    if task.name in _REGISTRY and not overwrite:
        raise ValueError(
            f"A task named {task.name!r} is already registered; pass "
            "overwrite=True to replace it.")
    _REGISTRY[task.name] = task
    return task


def get_task(name):
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
