r"""Exports a trained model folder for serving.

    python scripts/export.py --bam_dir=DIR --model_name=M [--trial=1] \
        --export_dir=E

writes E/saved_model (raw text in, every task answered; loads with
TensorFlow and tensorflow-text alone), E/model.keras and E/bam_tasks.json.
"""

import os
import sys

from bam_tf_scripts import _startup  # noqa: F401  (first)
from absl import app
from absl import flags

from bam_tf.errors import BamError
from bam_tf.serving.export import export_model

flags.DEFINE_string("bam_dir", None, "Root folder.")
flags.DEFINE_string("model_name", None, "Model folder under BAM_DIR/models.")
flags.DEFINE_integer("trial", 1, "Which trial's weights.")
flags.DEFINE_string("export_dir", None, "Where to write the export.")
flags.DEFINE_string("pretrained_model", None,
                    "The run's encoder, where it is no longer where the run "
                    "found it (default: the path in its config.json).")
flags.mark_flags_as_required(["bam_dir", "model_name", "export_dir"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        path = export_model(
            os.path.join(FLAGS.bam_dir, "models", FLAGS.model_name),
            FLAGS.export_dir, FLAGS.trial, FLAGS.pretrained_model)
    except BamError as e:
        sys.exit(f"error: {e}")
    print(f"exported {path}")


def run():
    """The console command."""
    _startup.run(main, __name__)


if __name__ == "__main__":
    run()
