r"""Trains and evaluates a single-task or multi-task model (or a student).

    python scripts/run_classifier.py --model_name=rte-model --bam_dir=DIR \
        --task_names=rte --flagfile=flags/single_task.cfg --debug

Copies of one command on several GPUs or machines sharing DIR share the
trials out (`--trials=4,5` runs only those).
"""

import sys

from bam_tf_scripts import _startup  # noqa: F401  (first)
from absl import app
from absl import flags
from absl import logging

from bam_tf.config import RunConfig
from bam_tf.errors import BamError
from bam_tf.experiment.run import train_and_evaluate
from bam_tf.store.model_dir import ModelDir
from bam_tf_flags import bam_flags

bam_flags.define_flags()
# --help lists the run's flags, not only this file's.
flags.adopt_module_key_flags(bam_flags)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    bam_flags.import_task_modules(FLAGS.task_modules)
    try:
        config = RunConfig.from_dict(bam_flags.config_values())
        results = train_and_evaluate(
            config, overwrite=FLAGS.overwrite, runtime=bam_flags.runtime(),
            verbose=1 if sys.stdout.isatty() else 2)
    except BamError as e:
        sys.exit(f"error: {e}")
    for trial in results["trials"]:
        logging.info("trial %d: avg %.2f", trial["trial"], trial["avg"])
    folder = ModelDir.of(config)
    print(f"wrote {folder.path}: results.json and results.txt (every finished "
          f"trial), outputs/ (predictions, GLUE files), checkpoints/ "
          f"(weights); curves and HParams: tensorboard --logdir "
          f"{folder.file('logs')}")


def run():
    """The console command."""
    _startup.run(main, __name__)


if __name__ == "__main__":
    run()
