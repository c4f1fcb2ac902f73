"""Export a trained model folder: as one serving artifact (a TensorFlow
SavedModel that reads raw text and answers every task, and the Keras model
file), as a keras-hub preset folder (`export_keras_hub`), or one task as a
Hugging Face folder (`export_transformers`).

The SavedModel holds the tokenizer (its vocabulary as a lookup table), the
packer and the model as one graph: `tf.saved_model.load` in a process with
TensorFlow and tensorflow-text (which registers the tokenizer's ops) runs it,
without bam-tf or keras-hub.
"""

import json
import os

import keras
import tensorflow as tf

from bam_tf.data.preprocessor import BamPreprocessor
from bam_tf.encoders.builder import build_encoder
from bam_tf.io_utils import atomic_write_json
from bam_tf.io_utils import not_local
from bam_tf.model.factory import build_model
from bam_tf.model.factory import load_weights
from bam_tf.serving.hf_folder import write_hf_folder
from bam_tf.serving.keras_hub_preset import write_keras_hub_preset
from bam_tf.serving.task_table import TASKS_FILE
from bam_tf.serving.task_table import ExportError
from bam_tf.serving.task_table import task_table
from bam_tf.store.bam_dir import RESERVED_FOLDERS
from bam_tf.store.locking import LOCK_FILE
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.ownership import MODEL_FOLDER_FILES
from bam_tf.tasks import get_tasks


def load_trained_model(model_dir, trial=1, pretrained_model=None):
    """(model, tokenizer, config, tasks) of a model folder's trial.
    `pretrained_model` names the encoder (its architecture and tokenizer)
    where it is no longer where the run found it.

    Example:

    ```python
    model, tokenizer, config, tasks = load_trained_model(
        "bam/models/rte-debug", trial=1)
    ```
    """
    folder = ModelDir.at(model_dir)
    weights = folder.weights_path(trial)
    for path in (folder.config_path, weights):
        if not os.path.exists(path):
            raise ExportError(f"{path} not found; train the model (trial "
                              f"{trial}) first.")
    config = folder.read_config()
    if pretrained_model and not config.debug:
        config = config.replace(pretrained_model=pretrained_model)
    tasks = get_tasks(config.task_names)
    # The debug vocabulary was learned from the data.
    encoder = build_encoder(config, vocabulary=folder.read_vocabulary()
                            if config.debug else None)
    model = build_model(encoder.backbone, [t.head_spec for t in tasks])
    load_weights(model, weights)
    return model, encoder.tokenizer, config, tasks


class _Server(tf.Module):
    """Tokenize, pack, run the model, read the heads; all in TensorFlow."""

    def __init__(self, model, preprocessor, tasks):
        super().__init__()
        self.model = model
        self.preprocessor = preprocessor
        self.tasks = tasks
        self.label_slots = max(t.num_labels for t in tasks)

    def _features(self, text_a, text_b, pair):
        return self.preprocessor((text_a, text_b) if pair else text_a)

    def _task_outputs(self, task, out):
        if task.is_regression:
            score = task.unscale(out)
            n = tf.shape(out)[0]
            return {"probabilities": tf.zeros([n, self.label_slots]),
                    "label": tf.fill([n], ""), "score": score}
        probabilities = tf.nn.softmax(out, axis=-1)
        labels = tf.gather(tf.constant(task.label_list),
                           tf.argmax(probabilities, axis=-1))
        padding = self.label_slots - task.num_labels
        return {"probabilities": tf.pad(probabilities, [[0, 0], [0, padding]]),
                "label": labels,
                "score": tf.reduce_max(probabilities, axis=-1)}

    def predict(self, text_a, text_b, task):
        """One task, chosen by name at run time."""
        equal = tf.equal(tf.constant([t.name for t in self.tasks]),
                         task)
        known = tf.debugging.Assert(tf.reduce_any(equal), [
            "Unknown task", task, "; this model answers",
            tf.constant(", ".join(t.name for t in self.tasks))])
        with tf.control_dependencies([known]):
            index = tf.argmax(tf.cast(equal, tf.int32), output_type=tf.int32)

        def branch(task):
            def run():
                features = self._features(text_a, text_b, task.has_pairs)
                out = self.model(features, training=False)[task.name]
                return self._task_outputs(task, out)
            return run
        return tf.switch_case(index, [branch(t) for t in self.tasks])

    def predict_all(self, text_a, text_b):
        """Every task at once: `<task>_label`, `<task>_probabilities`
        (classification), `<task>_score`."""
        outputs = {}
        features = {}
        for pair in sorted({t.has_pairs for t in self.tasks}):
            features[pair] = self._features(text_a, text_b, pair)
        results = {pair: self.model(f, training=False)
                   for pair, f in features.items()}
        for task in self.tasks:
            out = results[task.has_pairs][task.name]
            task_out = self._task_outputs(task, out)
            if task.is_regression:
                outputs[f"{task.name}_score"] = task_out["score"]
            else:
                outputs[f"{task.name}_label"] = task_out["label"]
                outputs[f"{task.name}_probabilities"] = tf.nn.softmax(out, -1)
        return outputs


# What an earlier export of each format leaves in its folder: such a
# folder is written over; any other non-empty folder is refused.
_EXPORT_MARKERS = {"saved_model": TASKS_FILE, "keras_hub": "bam_heads.json",
                   "transformers": "config.json"}


def check_export_dir(model_dir, export_dir, form):
    """Refuses an `export_dir` that the export does not own: the model
    folder itself or anything inside it, any model folder, a BAM_DIR or
    its reserved folders, or a non-empty folder that is not an earlier
    export of the same `form` ("saved_model", "keras_hub",
    "transformers"). Nothing is written before this passes."""
    problem = not_local(export_dir)
    if problem:
        raise ExportError(f"--export_dir={export_dir} {problem}.")
    target = os.path.realpath(export_dir)
    model = os.path.realpath(model_dir)
    bam_dir = ModelDir.at(model).bam_dir
    reserved = [os.path.join(bam_dir, name) for name in RESERVED_FOLDERS]
    inside = lambda root: target == root or target.startswith(root + os.sep)
    where = ("the model folder it exports" if inside(model)
             else f"the BAM_DIR {bam_dir}" if target == bam_dir
             else next((f"{r}, a folder bam-tf keeps" for r in reserved
                        if inside(r)), None))
    if where is None and os.path.isdir(target):
        names = set(os.listdir(target))
        if names & set(MODEL_FOLDER_FILES + (LOCK_FILE,)):
            where = "a model folder"
        elif names and _EXPORT_MARKERS[form] not in names:
            where = "a non-empty folder that holds no earlier export of " \
                    f"this format ({_EXPORT_MARKERS[form]} is missing)"
        elif form == "transformers" and names and not _is_hf_export(target):
            where = "a Hugging Face folder that bam-tf did not write"
    if os.path.isfile(target):
        where = "a file"
    if where:
        raise ExportError(
            f"--export_dir={export_dir} is {where}: an export writes only "
            "into a new or empty folder, or over an earlier export of the "
            "same format. Pass another --export_dir (for example "
            f"{os.path.join(os.path.dirname(bam_dir), 'exports', os.path.basename(model))}).")


def _is_hf_export(folder):
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            return "bam_task" in json.load(f)
    except (OSError, ValueError):
        return False


def export_model(model_dir, export_dir, trial=1, pretrained_model=None):
    """Writes the SavedModel (signatures `serving_default` = predict and
    `predict_all`), `model.keras` and `bam_tasks.json` to `export_dir`.

    Signatures take `text_a` and `text_b` (string [batch]; text_b is ignored
    by one-text tasks) and, for `serving_default`, `task` (string scalar).
    """
    check_export_dir(model_dir, export_dir, "saved_model")
    model, tokenizer, config, tasks = load_trained_model(
        model_dir, trial, pretrained_model)
    preprocessor = BamPreprocessor(tokenizer, config.max_seq_length)
    server = _Server(model, preprocessor, tasks)
    texts = tf.TensorSpec([None], tf.string)
    # Tracked layers must be built.
    tokenizer(tf.constant(["build"]))
    preprocessor.build()
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(preprocessor)
    archive.add_endpoint(
        "serving_default", server.predict,
        input_signature=[texts, texts, tf.TensorSpec([], tf.string)])
    archive.add_endpoint("predict_all", server.predict_all,
                         input_signature=[texts, texts])
    os.makedirs(export_dir, exist_ok=True)
    saved_model = os.path.join(export_dir, "saved_model")
    archive.write_out(saved_model, verbose=False)
    model.save(os.path.join(export_dir, "model.keras"))
    atomic_write_json(os.path.join(export_dir, TASKS_FILE), {
        "model_dir": os.path.abspath(model_dir), "trial": trial,
        "max_seq_length": config.max_seq_length,
        "tasks": task_table(tasks)})
    return saved_model


def _source(model_dir, trial):
    return {"model_dir": os.path.abspath(model_dir), "trial": trial}


def export_keras_hub(model_dir, export_dir, trial=1, pretrained_model=None):
    """Writes a keras-hub preset folder of the trained encoder and
    tokenizer, with the heads beside (`bam_tf.serving.keras_hub_preset`)."""
    check_export_dir(model_dir, export_dir, "keras_hub")
    model, tokenizer, config, tasks = load_trained_model(
        model_dir, trial, pretrained_model)
    return write_keras_hub_preset(model, tokenizer, tasks,
                                  config.max_seq_length, export_dir,
                                  _source(model_dir, trial))


def export_transformers(model_dir, export_dir, task_name, trial=1,
                        pretrained_model=None):
    """Writes `task_name`'s Hugging Face folder (`bam_tf.serving.hf_folder`)
    and returns its config.json."""
    check_export_dir(model_dir, export_dir, "transformers")
    model, tokenizer, config, tasks = load_trained_model(
        model_dir, trial, pretrained_model)
    by_name = {t.name: t for t in tasks}
    if task_name not in by_name:
        raise ExportError(
            f"--task={task_name}: {model_dir} has no such task; its tasks "
            f"are {sorted(by_name)}.")
    return write_hf_folder(model, tokenizer, by_name[task_name],
                           config.max_seq_length, export_dir)

