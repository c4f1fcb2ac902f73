"""absl parsers for the command line's structured values: `task:value`
maps and trial lists. The text is parsed here, when the flags are read, so
the library's configuration only ever sees lists, tuples and dicts (the
form config.json holds) and a bad entry is a flags error naming the flag.

Example:
>>> TaskMapParser(float).parse("sts:4,rte:0.5")
{'sts': 4.0, 'rte': 0.5}
>>> parse_trials("1-3,7")
(1, 2, 3, 7)
"""

from absl import flags


class TaskMapParser(flags.ArgumentParser):
    """'task:value,...' -> {task: convert(value)}: every entry of the form
    task:value, no task twice. absl names the flag in its error."""

    syntactic_help = "a comma-separated list of task:value"

    def __init__(self, convert=str, form="task:value"):
        self._convert = convert
        self._form = form

    def parse(self, argument):
        pairs = {}
        for item in [i for i in argument.split(",") if i.strip()]:
            task, sep, value = (s.strip() for s in item.partition(":"))
            try:
                value = self._convert(value) if sep and value else None
            except ValueError:
                value = None
            if not task or value is None:
                raise ValueError(
                    f"entry {item!r} is not of the form {self._form}.")
            if task in pairs:
                raise ValueError(f"names task {task!r} twice.")
            pairs[task] = value
        return pairs

    def flag_type(self):
        return "task map"


class TaskMapSerializer(flags.ArgumentSerializer):

    def serialize(self, value):
        return ",".join(f"{k}:{v}" for k, v in value.items())


def parse_trials(text):
    """'3' or '4,5' or '1-3,7' -> (1, 2, 3, 7)."""
    trials = set()
    for item in [i.strip() for i in str(text).split(",") if i.strip()]:
        first, sep, last = item.partition("-")
        try:
            first = int(first)
            last = int(last) if sep else first
        except ValueError:
            raise ValueError(f"entry {item!r} is not a trial number or a "
                             "range like 2-5.") from None
        if first < 1 or last < first:
            raise ValueError(f"entry {item!r}: trials are numbered from "
                             "1, ranges go upwards.")
        trials.update(range(first, last + 1))
    if not trials:
        raise ValueError("names no trial.")
    return tuple(sorted(trials))


class TrialsParser(flags.ArgumentParser):
    """Trial numbers and ranges: '1-3,7' -> (1, 2, 3, 7)."""

    syntactic_help = "trial numbers and ranges, e.g. 1-3,7"

    def parse(self, argument):
        return parse_trials(argument)

    def flag_type(self):
        return "trials"


class TrialsSerializer(flags.ArgumentSerializer):

    def serialize(self, value):
        return ",".join(str(t) for t in value)


def define_task_map(name, convert, form, help_text, flag_values,
                    module_name):
    """`module_name`: the module whose flags --help lists it with."""
    flags.DEFINE(TaskMapParser(convert, form), name, None, help_text,
                 flag_values=flag_values, serializer=TaskMapSerializer(),
                 module_name=module_name)


def define_trials(name, help_text, flag_values, module_name):
    flags.DEFINE(TrialsParser(), name, None, help_text,
                 flag_values=flag_values, serializer=TrialsSerializer(),
                 module_name=module_name)
