r"""A BAM recipe end to end: trains the teachers that are missing, writes
their targets, trains the student(s) and prints teachers against students.

    python scripts/born_again.py --recipe=single_to_multi --model_name=bam \
        --task_names=rte,mrpc,sts --bam_dir=DIR --debug

Takes the same flags as run_classifier.py; --model_name is the prefix of
every model the recipe trains. Steps that finished are skipped, so running
the command again after a crash goes on where it stopped. Copies of the
command running at once (several GPUs or machines sharing DIR) share the
trials out; a student waits for the teacher trials it learns from.
--print_commands prints one run_classifier.py command per trial instead,
teachers first, for a scheduler.
"""

import sys

from bam_tf_scripts import _startup  # noqa: F401  (first)
from absl import app
from absl import flags

from bam_tf.config import RECIPE_OWNED
from bam_tf.errors import BamError
from bam_tf.experiment.recipes import RECIPES
from bam_tf.experiment.recipes import format_table
from bam_tf.experiment.recipes import recipe_configs
from bam_tf.experiment.recipes import run_recipe
from bam_tf.store.bam_dir import comparison_base
from bam_tf.store.bam_dir import models_dir
from bam_tf_flags import bam_flags

bam_flags.define_flags()
# --help lists the run's flags, not only this file's.
flags.adopt_module_key_flags(bam_flags)
flags.DEFINE_enum("recipe", "single_to_multi", RECIPES, "Which recipe.")
flags.DEFINE_boolean(
    "print_commands", False,
    "Print the recipe as run_classifier.py commands, one line per trial in "
    "dependency order (every teacher trial before the students), and exit: "
    "for a scheduler (Slurm dependencies, a job list).")
flags.DEFINE_float(
    "wait_secs", 30.0,
    "How often a copy of the command that waits for other processes (a "
    "student for its teachers' trials) looks again.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    bam_flags.import_task_modules(FLAGS.task_modules)
    if not FLAGS.model_name or not FLAGS.task_names or not FLAGS.bam_dir:
        raise app.UsageError(
            "--model_name (the prefix), --task_names and --bam_dir are "
            "required.")
    if FLAGS.overwrite and FLAGS.print_commands:
        raise app.UsageError(
            "--overwrite with --print_commands: the printed commands share "
            "each folder, and one replacing it would delete what the "
            "others trained; delete the recipe's folders under "
            "BAM_DIR/models/ first.")
    if FLAGS.distill or FLAGS.teachers or FLAGS.preset:
        raise app.UsageError(
            "--distill, --teachers and --preset are chosen by the recipe.")
    values = {k: v for k, v in bam_flags.config_values().items()
              if k not in RECIPE_OWNED}
    try:
        runtime = bam_flags.runtime()
        args = (FLAGS.recipe, FLAGS.model_name, list(FLAGS.task_names),
                values)
        if FLAGS.print_commands:
            for config in recipe_configs(*args, debug=bool(FLAGS.debug),
                                         runtime=runtime):
                for trial in runtime.trial_numbers(config.num_trials):
                    print(bam_flags.command_line(
                        config, runtime, trial,
                        task_modules=FLAGS.task_modules))
            return
        table = run_recipe(
            *args, debug=bool(FLAGS.debug), runtime=runtime,
            verbose=1 if sys.stdout.isatty() else 2,
            poll_secs=FLAGS.wait_secs, overwrite=FLAGS.overwrite)
    except BamError as e:
        sys.exit(f"error: {e}")
    print(f"\n{FLAGS.recipe}: dev scores, median over trials\n")
    print(format_table(table))
    base = comparison_base(FLAGS.bam_dir, FLAGS.model_name, FLAGS.recipe)
    names = ", ".join(m["name"] for m in table["models"])
    print(f"wrote the models under {models_dir(FLAGS.bam_dir)} "
          f"({names}) and this table to {base}.json and {base}.txt")


def run():
    """The console command."""
    _startup.run(main, __name__)


if __name__ == "__main__":
    run()
