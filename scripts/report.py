r"""Multi-seed report over model folders: medians, means, standard
deviations, minima and maxima per task and for the average, a Table 1-style
table, and pairwise significance tests (two-sided Mann-Whitney U over trial
scores, exact with ties, between models with 2 trials or more; paired
bootstrap over dev examples, per task and for the average),
Holm-Bonferroni corrected.

    python scripts/report.py --bam_dir=DIR --model_names=single,multi \
        [--output_json=report.json] [--markdown=report.md]

A name LABEL=a+b+... makes one row of several model folders joined by trial
number, as the paper's "Single" row joins one single-task model per task:

    --model_names=single=bam-rte-single+bam-mrpc-single,bam-multi

--split=train scores the same trials on their training sets, from the
predictions every run writes there: how well each model fits what it
trained on, to tell under-fitting from over-fitting (Mann-Whitney U only).
"""

import sys

from bam_tf_scripts import _startup  # noqa: F401  (first)
from absl import app
from absl import flags

from bam_tf.analysis.report import build_report
from bam_tf.analysis.report import format_markdown
from bam_tf.errors import BamError
from bam_tf.io_utils import atomic_write_json
from bam_tf.io_utils import atomic_write_text

flags.DEFINE_string("bam_dir", None, "Root folder.")
flags.DEFINE_list("model_names", None, "Model folders to compare; "
                  "LABEL=a+b+... joins several folders into one row.")
flags.DEFINE_integer("bootstrap_samples", 1000, "Bootstrap resamples.")
flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
flags.DEFINE_enum("split", "dev", ["dev", "train"],
                  "Score on the dev set (from results.json) or on the "
                  "training set (from the train predictions files).")
flags.DEFINE_string("glue_dir", None,
                    "GLUE folder to read dev/train labels from (default: "
                    "where each run read them, its config.json): for "
                    "model folders moved to another machine.")
flags.DEFINE_string("output_json", None, "Write the report as JSON.")
flags.DEFINE_string("markdown", None, "Write the report as Markdown.")
flags.mark_flags_as_required(["bam_dir", "model_names"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        report = build_report(FLAGS.bam_dir, FLAGS.model_names,
                              FLAGS.bootstrap_samples, FLAGS.seed,
                              FLAGS.split, FLAGS.glue_dir)
    except BamError as e:
        sys.exit(f"error: {e}")
    text = format_markdown(report)
    print(text, end="")
    if FLAGS.output_json:
        atomic_write_json(FLAGS.output_json, report)
    if FLAGS.markdown:
        atomic_write_text(FLAGS.markdown, text)


def run():
    """The console command."""
    _startup.run(main, __name__)


if __name__ == "__main__":
    run()
