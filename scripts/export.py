r"""Exports a trained model folder.

    python scripts/export.py --bam_dir=DIR --model_name=M [--trial=1] \
        --export_dir=E [--format=saved_model|keras_hub|transformers] \
        [--task=NAME]

--format=saved_model (the default) writes E/saved_model (raw text in,
every task answered; loads with TensorFlow and tensorflow-text alone),
E/model.keras and E/bam_tasks.json.

--format=keras_hub writes a keras-hub preset folder: the trained encoder
and tokenizer (`keras_hub.models.Backbone.from_preset(E)`, or a new run's
`--pretrained_model=E`), with the task heads beside (bam_heads.json,
bam_heads.safetensors) and E/bam_tasks.json.

--format=transformers --task=NAME writes one task as a Hugging Face folder
(config.json, model.safetensors, tokenizer files) for
`AutoModelForSequenceClassification.from_pretrained(E)`: BERT, RoBERTa,
DistilBERT and ALBERT encoders (docs/serving.md says how each head maps).
"""

import sys

from bam_tf_scripts import _startup  # noqa: F401  (first)
from absl import app
from absl import flags

from bam_tf.errors import BamError
from bam_tf.serving.export import export_keras_hub
from bam_tf.serving.export import export_model
from bam_tf.serving.export import export_transformers
from bam_tf.store.bam_dir import model_path
from bam_tf_flags import bam_flags

flags.DEFINE_string("bam_dir", None, "Root folder.")
flags.DEFINE_string("model_name", None, "Model folder under BAM_DIR/models.")
flags.DEFINE_integer("trial", 1, "Which trial's weights.")
flags.DEFINE_string("export_dir", None, "Where to write the export.")
flags.DEFINE_enum("format", "saved_model",
                  ["saved_model", "keras_hub", "transformers"],
                  "What to write: a SavedModel answering every task, a "
                  "keras-hub preset folder, or one task as a Hugging Face "
                  "folder (--task).")
flags.DEFINE_string("task", None,
                    "The task to export with --format=transformers.")
flags.DEFINE_string("pretrained_model", None,
                    "The run's encoder, where it is no longer where the run "
                    "found it (default: the path in its config.json).")
flags.mark_flags_as_required(["bam_dir", "model_name", "export_dir"])
bam_flags.define_task_modules_flag()
flags.declare_key_flag("task_modules")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    bam_flags.import_task_modules(FLAGS.task_modules)
    if (FLAGS.format == "transformers") != bool(FLAGS.task):
        raise app.UsageError("--task goes with --format=transformers, and "
                             "only with it (a Hugging Face folder holds one "
                             "task's head).")
    model_dir = model_path(FLAGS.bam_dir, FLAGS.model_name)
    try:
        if FLAGS.format == "saved_model":
            path = export_model(model_dir, FLAGS.export_dir, FLAGS.trial,
                                FLAGS.pretrained_model)
            print(f"wrote {path}, {FLAGS.export_dir}/model.keras and "
                  f"{FLAGS.export_dir}/bam_tasks.json")
        elif FLAGS.format == "keras_hub":
            export_keras_hub(model_dir, FLAGS.export_dir, FLAGS.trial,
                             FLAGS.pretrained_model)
            print(f"wrote the keras-hub preset {FLAGS.export_dir} (encoder, "
                  "tokenizer, bam_heads.json, bam_heads.safetensors)")
        else:
            config = export_transformers(
                model_dir, FLAGS.export_dir, FLAGS.task, FLAGS.trial,
                FLAGS.pretrained_model)
            print(f"wrote the Hugging Face folder {FLAGS.export_dir} "
                  f"({config['architectures'][0]}, task {FLAGS.task})")
            if "bam_score" in config:
                print(f"regression: score = {config['bam_score']}")
    except BamError as e:
        sys.exit(f"error: {e}")


def run():
    """The console command."""
    _startup.run(main, __name__)


if __name__ == "__main__":
    run()
