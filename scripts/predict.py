r"""Predicts with an exported model (scripts/export.py) on raw text.

    python scripts/predict.py --export_dir=E --task_name=rte \
        --input_file=pairs.tsv [--output_file=out.jsonl]
    cat sentences.jsonl | python scripts/predict.py --export_dir=E \
        --task_name=all --input_format=jsonl

Input: TSV lines `text_a` or `text_a<TAB>text_b` (no header unless
--skip_header), or JSONL objects {"text_a": ..., "text_b": ...}. Output: one
JSON object per input line, in input order: {"label", "probabilities"} for
classification, {"score"} for regression; with --task_name=all, one such
object per task, keyed by task name. Empty texts are allowed (they encode to
[CLS] [SEP] and get a prediction); texts longer than the model's
max_seq_length are truncated as in training.

Loads TensorFlow and tensorflow-text, not bam-tf's training stack.
"""

import json
import os
import sys

from bam_tf_scripts import _startup  # noqa: F401  (first)
from absl import app
from absl import flags

from bam_tf.errors import BamError
from bam_tf.serving.task_table import read_task_table
from bam_tf.store.ownership import check_output_file

flags.DEFINE_string("export_dir", None, "An export of scripts/export.py.")
flags.DEFINE_string("task_name", None, "A task of the model, or 'all'.")
flags.DEFINE_string("input_file", None, "Input; standard input if unset.")
flags.DEFINE_string("output_file", None, "Output; standard output if unset.")
flags.DEFINE_enum("input_format", None, ["tsv", "jsonl"],
                  "Default: by the file's extension (.jsonl/.json), else tsv.")
flags.DEFINE_boolean("skip_header", False, "The TSV's first line is a header.")
flags.DEFINE_integer("batch_size", 64, "Examples per model call.")
flags.mark_flags_as_required(["export_dir", "task_name"])
FLAGS = flags.FLAGS


class InputError(ValueError):
    pass


def read_examples(lines, source, input_format, pair_tasks, skip_header):
    """Yields (text_a, text_b) per input line; a malformed line is an error
    naming the source, the line and what was expected."""
    for line_no, line in enumerate(lines, start=1):
        if skip_header and line_no == 1:
            continue
        line = line.rstrip("\n").rstrip("\r")
        if input_format == "jsonl":
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{source}, line {line_no}: not JSON ({e}).")
            if not isinstance(obj, dict) or not isinstance(
                    obj.get("text_a", obj.get("text")), str):
                raise InputError(
                    f"{source}, line {line_no}: expected an object with a "
                    "string \"text_a\" (and optionally \"text_b\").")
            fields = [obj.get("text_a", obj.get("text"))]
            if obj.get("text_b") is not None:
                fields.append(obj["text_b"])
        else:
            fields = line.split("\t")
        if len(fields) > 2:
            raise InputError(
                f"{source}, line {line_no}: expected 1 or 2 tab-separated "
                f"texts, found {len(fields)} fields.")
        if len(fields) == 1 and pair_tasks:
            raise InputError(
                f"{source}, line {line_no}: task(s) {', '.join(pair_tasks)} "
                "take two texts (text_a<TAB>text_b); found one.")
        yield fields[0], fields[1] if len(fields) == 2 else ""


def _batches(examples, size):
    batch = []
    for example in examples:
        batch.append(example)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _rows(result, tasks, task_name, n):
    def one(name, get):
        info = tasks[name]
        if info["labels"] is None:
            return {"score": float(get("score"))}
        probabilities = get("probabilities")
        return {"label": get("label").decode("utf-8"),
                "probabilities": {label: float(p) for label, p in
                                  zip(info["labels"], probabilities)}}
    rows = []
    for i in range(n):
        if task_name == "all":
            rows.append({name: one(name, lambda k: result[f"{name}_{k}"][i])
                         for name in tasks})
        else:
            rows.append(one(task_name, lambda k: result[k][i]))
    return rows


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    problem = FLAGS.output_file and check_output_file(
        "--output_file", FLAGS.output_file, [FLAGS.input_file])
    if problem:
        sys.exit(f"error: {problem}.")
    try:
        tasks = read_task_table(FLAGS.export_dir)
    except BamError as e:
        sys.exit(f"error: {e}")
    name = FLAGS.task_name
    if name != "all" and name not in tasks:
        sys.exit(f"error: unknown task {name!r}; this model answers "
                 f"{', '.join(sorted(tasks))} (or 'all').")
    asked = list(tasks) if name == "all" else [name]
    pair_tasks = [t for t in asked if tasks[t]["pair"]]
    input_format = FLAGS.input_format or (
        "jsonl" if (FLAGS.input_file or "").endswith((".jsonl", ".json"))
        else "tsv")

    # tensorflow_text registers the tokenizer's ops.
    tf = _startup.import_tensorflow("tensorflow_text")
    from tqdm import tqdm

    model = tf.saved_model.load(os.path.join(FLAGS.export_dir,
                                             "saved_model"))
    source = FLAGS.input_file or "<stdin>"
    try:
        infile = (open(FLAGS.input_file, encoding="utf-8")
                  if FLAGS.input_file else sys.stdin)
    except OSError as e:
        sys.exit(f"error: {e}")
    total = None
    if FLAGS.input_file:
        with open(FLAGS.input_file, encoding="utf-8") as f:
            total = sum(1 for _ in f) - int(FLAGS.skip_header)
    outfile = (open(FLAGS.output_file + ".tmp", "w", encoding="utf-8")
               if FLAGS.output_file else sys.stdout)
    progress = tqdm(total=total, unit="ex", file=sys.stderr,
                    disable=total is None and not sys.stderr.isatty())
    try:
        examples = read_examples(infile, source, input_format, pair_tasks,
                                 FLAGS.skip_header)
        written = 0
        for batch in _batches(examples, FLAGS.batch_size):
            text_a = tf.constant([a for a, _ in batch])
            text_b = tf.constant([b for _, b in batch])
            if name == "all":
                result = model.signatures["predict_all"](
                    text_a=text_a, text_b=text_b)
            else:
                result = model.signatures["serving_default"](
                    text_a=text_a, text_b=text_b, task=tf.constant(name))
            result = {k: v.numpy() for k, v in result.items()}
            for row in _rows(result, tasks, name, len(batch)):
                outfile.write(json.dumps(row) + "\n")
            progress.update(len(batch))
            written += len(batch)
    except (InputError, UnicodeDecodeError) as e:
        if FLAGS.output_file:  # the output keeps nothing half-written
            outfile.close()
            os.unlink(FLAGS.output_file + ".tmp")
        if isinstance(e, UnicodeDecodeError):
            e = f"{source}: not valid UTF-8 ({e.reason} at byte {e.start})."
        sys.exit(f"error: {e}")
    finally:
        progress.close()
    if FLAGS.output_file:
        outfile.close()
        os.replace(FLAGS.output_file + ".tmp", FLAGS.output_file)
        print(f"wrote {written} predictions to {FLAGS.output_file}",
              file=sys.stderr)


def run():
    """The console command."""
    _startup.run(main, __name__)


if __name__ == "__main__":
    run()
