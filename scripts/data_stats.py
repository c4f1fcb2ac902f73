r"""Per task and split: examples (after doubling), labels, token lengths and
the share truncated at --max_seq_length; and each task's sampling
probability.

    python scripts/data_stats.py --glue_dir=DIR --task_names=rte,mrpc,sts \
        --pretrained_model=PATH [--output_json=stats.json]
"""

import sys

from bam_tf_scripts import _startup  # noqa: F401  (first)
from absl import app
from absl import flags

from bam_tf.config import DATA_SOURCES
from bam_tf.data.stats import data_statistics
from bam_tf.data.stats import format_statistics
from bam_tf.errors import BamError
from bam_tf.io_utils import atomic_write_json
from bam_tf.store.ownership import check_output_file
from bam_tf.tasks import get_tasks
from bam_tf_flags import bam_flags

flags.DEFINE_string("glue_dir", None, "GLUE folder.")
flags.DEFINE_string("bam_dir", None, "For --pretrained_model names under "
                    "BAM_DIR/pretrained_models.")
flags.DEFINE_list("task_names", None, "Tasks.")
flags.DEFINE_enum("data_source", "tsv", DATA_SOURCES, "Data source.")
flags.DEFINE_float("task_weight_exponent", 0.75, "Sampling exponent.")
flags.DEFINE_string("pretrained_model", None, "Tokenizer source.")
flags.DEFINE_boolean("debug", False, "Debug tokenizer learned from the data.")
flags.DEFINE_integer("max_seq_length", 128, "Truncation length.")
flags.DEFINE_boolean("double_unordered", True, "Double unordered pairs.")
flags.DEFINE_string("output_json", None, "Also write the statistics here.")
bam_flags.define_task_modules_flag()
flags.declare_key_flag("task_modules")
flags.mark_flags_as_required(["task_names"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    bam_flags.import_task_modules(FLAGS.task_modules)
    problem = FLAGS.output_json and check_output_file(
        "--output_json", FLAGS.output_json)
    if problem:
        sys.exit(f"error: {problem}.")
    try:
        tasks = get_tasks(FLAGS.task_names)
        tokenizer = None
        if FLAGS.debug or FLAGS.pretrained_model:
            from bam_tf.data.loading import load_split
            from bam_tf.encoders.encoder import build_debug_encoder
            from bam_tf.encoders.encoder import debug_vocabulary_texts
            from bam_tf.encoders.encoder import load_encoder
            if FLAGS.debug:
                texts = debug_vocabulary_texts(
                    [load_split(task, "train", FLAGS.glue_dir,
                                FLAGS.data_source) for task in tasks])
                tokenizer = build_debug_encoder(texts).tokenizer
            else:
                tokenizer = load_encoder(
                    FLAGS.pretrained_model, FLAGS.bam_dir).tokenizer
        stats = data_statistics(
            tasks, FLAGS.glue_dir, FLAGS.data_source, tokenizer,
            FLAGS.max_seq_length, FLAGS.task_weight_exponent,
            FLAGS.double_unordered)
    except BamError as e:
        sys.exit(f"error: {e}")
    print(format_statistics(stats), end="")
    if FLAGS.output_json:
        atomic_write_json(FLAGS.output_json, stats)
        print(f"wrote {FLAGS.output_json}")


def run():
    """The console command."""
    _startup.run(main, __name__)


if __name__ == "__main__":
    run()
