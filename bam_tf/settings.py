"""`setting`: how every setting of a run is declared, once (the fields of
`bam_tf.config.RunConfig` and `bam_tf.runtime.Runtime`). The flags, their
--help, the identity's sections and the other roles are read from these
declarations."""

import dataclasses

REQUIRED = dataclasses.MISSING
SECTION_NAMES = ("experiment", "paths", "outputs", "runtime")
FORMS = (None, "names", "trials", "task_names", "task_numbers")
# The forms of a map from tasks to values.
MAP_FORMS = ("task_names", "task_numbers")


def setting(default, section, help, *, path=False, encoder=False,
            inert_unless=None, recipe_owned=False, choices=None, form=None):
    """One setting, declared once: its default, its part of a run
    (`section`), its help (the flag's --help, with the default and the
    presets' values added) and its roles. The flags, the identity's
    rules and the recipe's own settings are all read from here.

    Args:
        default: the value when unset; `REQUIRED` for none.
        section: "experiment" (decides the numbers: the run's identity),
            "paths" (where files are), "outputs" (what is written) or
            "runtime" (how the run is carried out: `Runtime`).
        help: one line of help.
        path: a path, saved in config.json relative to the BAM_DIR.
        encoder: decides the encoder's architecture or vocabulary (a
            Table 3 start must have the same).
        inert_unless: the switch without which the setting changes no
            number (the identity then ignores it).
        recipe_owned: set per step by a recipe, never by its user.
        choices: the values its flag takes (the configuration checks them
            too: config.json is not read through the flags).
        form: a structured value's form, one of `FORMS`: "names" (a list
            of names), "trials" (trial numbers, 1-3,7 on the command line),
            "task_names" ({task: model name}) or "task_numbers" ({task:
            number}); held as a tuple (of pairs, for a map).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if section not in SECTION_NAMES:
        raise ValueError(f"section must be one of {SECTION_NAMES}, got "
                         f"{section!r}")
    metadata = {"section": section, "help": help, "path": path,
                "encoder": encoder, "inert_unless": inert_unless,
                "recipe_owned": recipe_owned, "choices": choices,
                "form": form}
    return dataclasses.field(default=default, metadata=metadata)
