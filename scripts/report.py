r"""Multi-seed report over model folders: medians, means, standard
deviations, minima and maxima per task and for the average, a Table 1-style
table, and pairwise significance tests (two-sided Mann-Whitney U over trial
scores, exact with ties, between models with 2 trials or more; paired
bootstrap over dev examples, per task and for the average),
Holm-Bonferroni corrected.

    python scripts/report.py --bam_dir=DIR --model_names=single,multi \
        [--output_json=report.json] [--markdown=report.md] \
        [--figure=scores.png --paper_scores=paper.json]

A name LABEL=a+b+... makes one row of several model folders joined by trial
number, as the paper's "Single" row joins one single-task model per task:

    --model_names=single=bam-rte-single+bam-mrpc-single,bam-multi

--comparisons=A:B,C:D tests only those pairs of rows (by label), so the
Holm correction is over the questions named in advance, as the paper's
Table 4 compares each ablation with the model it ablates:

    --model_names=full=bam-s2m,lambda0=bam-s2m-lambda0,bam-multi,exp1=bam-exp1 \
        --comparisons=full:lambda0,bam-multi:exp1

--split=train scores the same trials on their training sets, from the
predictions every run writes there: how well each model fits what it
trained on, to tell under-fitting from over-fitting (Mann-Whitney U only).
"""

import json
import logging
import sys

from bam_tf_scripts import _startup  # noqa: F401  (first)
from absl import app
from absl import flags

from bam_tf.analysis.figure import check_paper_scores
from bam_tf.analysis.figure import draw_scores
from bam_tf.analysis.report import build_report
from bam_tf.analysis.report import format_markdown
from bam_tf.analysis.report import parse_pair
from bam_tf.errors import BamError
from bam_tf.io_utils import atomic_write_json
from bam_tf.io_utils import atomic_write_text
from bam_tf.store.ownership import check_output_file
from bam_tf_flags import bam_flags

flags.DEFINE_string("bam_dir", None, "Root folder.")
flags.DEFINE_list("model_names", None, "Model folders to compare; "
                  "LABEL=a+b+... joins several folders into one row.")
flags.DEFINE_list("comparisons", None,
                  "Pairs of rows to test, A:B by their labels (default: "
                  "every pair). Holm's correction is over the tests run.")
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
flags.DEFINE_string("figure", None,
                    "Write a PNG of every model's score per task and on "
                    "average: each trial a dot, the median a bar.")
flags.DEFINE_string("paper_scores", None,
                    "JSON file of the paper's numbers to draw beside the "
                    "models in --figure: {model label: {task: score}} "
                    "(docs/results/paper_table1.json).")
flags.DEFINE_string("figure_title", None, "Title of --figure.")
flags.mark_flags_as_required(["bam_dir", "model_names"])
bam_flags.define_task_modules_flag()
flags.declare_key_flag("task_modules")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    bam_flags.import_task_modules(FLAGS.task_modules)
    for flag in ("output_json", "markdown", "figure"):
        problem = FLAGS[flag].value and check_output_file(
            f"--{flag}", FLAGS[flag].value, [FLAGS.paper_scores])
        if problem:
            sys.exit(f"error: {problem}.")
    try:
        pairs = None if FLAGS.comparisons is None else [
            parse_pair(spec) for spec in FLAGS.comparisons]
        report = build_report(FLAGS.bam_dir, FLAGS.model_names,
                              FLAGS.bootstrap_samples, FLAGS.seed,
                              FLAGS.split, FLAGS.glue_dir, pairs)
        paper = _paper_scores(FLAGS.paper_scores, report)
    except BamError as e:
        sys.exit(f"error: {e}")
    text = format_markdown(report)
    print(text, end="")
    wrote = []
    if FLAGS.output_json:
        atomic_write_json(FLAGS.output_json, report)
        wrote.append(FLAGS.output_json)
    if FLAGS.markdown:
        atomic_write_text(FLAGS.markdown, text)
        wrote.append(FLAGS.markdown)
    if FLAGS.figure:
        # matplotlib's font cache notice is not the report's.
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        draw_scores(report, FLAGS.figure, paper, FLAGS.figure_title)
        wrote.append(FLAGS.figure)
    print(f"\nwrote {', '.join(wrote)}" if wrote else
          "\n(printed only: --output_json, --markdown and --figure write "
          "files)")


def _paper_scores(path, report):
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            paper = json.load(f)
    except OSError as e:
        raise BamError(f"--paper_scores: cannot read {path}: "
                       f"{e.strerror}.") from None
    except json.JSONDecodeError as e:
        raise BamError(f"{path} is not valid JSON: {e}.") from None
    return check_paper_scores(paper, report, path)


def run():
    """The console command."""
    _startup.run(main, __name__)


if __name__ == "__main__":
    run()
