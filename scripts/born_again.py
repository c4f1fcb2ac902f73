r"""A BAM recipe end to end: trains the teachers that are missing, writes
their targets, trains the student(s) and prints teachers against students.

    python scripts/born_again.py --recipe=single_to_multi --model_name=bam \
        --task_names=rte,mrpc,sts --bam_dir=DIR --debug

Takes the same flags as run_classifier.py; --model_name is the prefix of
every model the recipe trains. Steps that finished are skipped, so running
the command again after a crash goes on where it stopped.
"""

import sys

import _bootstrap  # noqa: F401
from absl import app
from absl import flags

from bam_tf.distribute import get_strategy
from bam_tf.errors import USER_ERRORS
from bam_tf.recipes import RECIPES
from bam_tf.recipes import format_table
from bam_tf.recipes import run_recipe
from flags import bam_flags

bam_flags.define_flags()
flags.DEFINE_enum("recipe", "single_to_multi", RECIPES, "Which recipe.")
FLAGS = flags.FLAGS

# Set per step by the recipe, never by the user.
_RECIPE_OWNED = ("model_name", "task_names", "distill", "teachers", "debug")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    bam_flags.import_task_modules(FLAGS.task_modules)
    if not FLAGS.model_name or not FLAGS.task_names or not FLAGS.bam_dir:
        raise app.UsageError(
            "--model_name (the prefix), --task_names and --bam_dir are "
            "required.")
    if FLAGS.distill or FLAGS.teachers or FLAGS.preset:
        raise app.UsageError(
            "--distill, --teachers and --preset are chosen by the recipe.")
    values = {k: v for k, v in bam_flags.config_values().items()
              if k not in _RECIPE_OWNED}
    try:
        table = run_recipe(
            FLAGS.recipe, FLAGS.model_name, FLAGS.task_names.split(","),
            values, debug=bool(FLAGS.debug),
            strategy=get_strategy(FLAGS.strategy, FLAGS.tpu),
            runtime=bam_flags.runtime(),
            verbose=1 if sys.stdout.isatty() else 2)
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    print(f"\n{FLAGS.recipe}: dev scores, median over trials\n")
    print(format_table(table))


if __name__ == "__main__":
    app.run(main)
