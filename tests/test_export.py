"""Export and predict: one artifact answers every task from raw text."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bam_tf.data.loading import load_split
from bam_tf.store.outputs import read_predictions
from bam_tf.experiment.run import train_and_evaluate
from bam_tf.serving.task_table import ExportError
from bam_tf.tasks import get_task

from conftest import REPO
from conftest import debug_config


@pytest.fixture(scope="module")
def exported(tiny_glue, tmp_path_factory):
    bam = tmp_path_factory.mktemp("bam")
    config = debug_config(bam, tiny_glue, "served", ["rte", "sts"],
                          padding="max_length", num_train_epochs=2,
                          n_writes_distill=0)
    train_and_evaluate(config, verbose=0)
    model_dir = os.path.join(bam, "models", "served")
    export_dir = str(tmp_path_factory.mktemp("export"))
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "export.py"),
         f"--bam_dir={bam}", "--model_name=served",
         f"--export_dir={export_dir}"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir, export_dir


def _dev(model_dir, task_name):
    return read_predictions(os.path.join(
        model_dir, "outputs", f"{task_name}_dev_predictions_1.npz"))


FRESH = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401
model = tf.saved_model.load(sys.argv[1])
pairs = json.load(open(sys.argv[2]))
out = {}
for task, (a, b) in pairs.items():
    r = model.signatures["serving_default"](
        text_a=tf.constant(a), text_b=tf.constant(b), task=tf.constant(task))
    out[task] = {k: v.numpy().tolist() if v.dtype != tf.string
                 else [x.decode() for x in v.numpy()] for k, v in r.items()}
every = model.signatures["predict_all"](text_a=tf.constant(a),
                                        text_b=tf.constant(b))
out["all_keys"] = sorted(every)
out["modules"] = sorted(m for m in ("bam_tf", "keras_hub", "flags")
                        if m in sys.modules)
json.dump(out, open(sys.argv[3], "w"))
"""


def test_fresh_process_without_the_project(exported, tiny_glue, tmp_path):
    model_dir, export_dir = exported
    pairs = {}
    for name in ("rte", "sts"):
        examples = load_split(get_task(name), "dev", tiny_glue)
        pairs[name] = (examples.text_a, examples.text_b)
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    (tmp_path / "fresh.py").write_text(FRESH)
    # -I: no PYTHONPATH, no user site, no script folder: the project is
    # not importable.
    result = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "fresh.py"),
         os.path.join(export_dir, "saved_model"),
         str(tmp_path / "pairs.json"), str(tmp_path / "out.json")],
        capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["modules"] == []
    assert out["all_keys"] == ["rte_label", "rte_probabilities", "sts_score"]
    rte = _dev(model_dir, "rte")
    logits = rte["logits"][np.argsort(rte["eid"])]
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(out["rte"]["probabilities"], expected,
                               atol=1e-5)
    labels = get_task("rte").label_list
    assert out["rte"]["label"] == [labels[i] for i in logits.argmax(-1)]
    sts = _dev(model_dir, "sts")
    np.testing.assert_allclose(out["sts"]["score"],
                               sts["predictions"][np.argsort(sts["eid"])],
                               atol=1e-5)


def _predict(export_dir, *args, stdin=None):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "predict.py"),
         f"--export_dir={export_dir}", *args],
        capture_output=True, text=True, timeout=600, input=stdin)


def test_predict_script_matches_dev_predictions(exported, tiny_glue,
                                                tmp_path):
    model_dir, export_dir = exported
    examples = load_split(get_task("rte"), "dev", tiny_glue)
    tsv = tmp_path / "rte.tsv"
    tsv.write_text("".join(f"{a}\t{b}\n" for a, b in
                           zip(examples.text_a, examples.text_b)))
    out = tmp_path / "rte.jsonl"
    result = _predict(export_dir, "--task_name=rte", f"--input_file={tsv}",
                      f"--output_file={out}", "--batch_size=5")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"wrote {len(examples)} predictions to {out}" in result.stderr
    rte = _dev(model_dir, "rte")
    logits = rte["logits"][np.argsort(rte["eid"])]
    labels = get_task("rte").label_list
    assert [r["label"] for r in rows] == [labels[i]
                                          for i in logits.argmax(-1)]
    assert set(rows[0]["probabilities"]) == set(labels)
    # JSONL in, every task out, through standard input and output.
    lines = "".join(json.dumps({"text_a": a, "text_b": b}) + "\n"
                    for a, b in zip(examples.text_a[:3], examples.text_b))
    result = _predict(export_dir, "--task_name=all", "--input_format=jsonl",
                      stdin=lines)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3 and set(rows[0]) == {"rte", "sts"}
    assert 0 <= rows[0]["sts"]["score"] <= 5


@pytest.mark.parametrize("args, stdin, message", [
    (["--task_name=cola"], "a\tb\n",
     "error: unknown task 'cola'; this model answers rte, sts"),
    (["--task_name=rte"], "a\tb\nonly one\n",
     "error: <stdin>, line 2: task(s) rte take two texts"),
    (["--task_name=sts"], "a\tb\tc\n",
     "error: <stdin>, line 1: expected 1 or 2 tab-separated texts"),
    (["--task_name=rte", "--input_format=jsonl"], '{"text_a": "a", \n',
     "error: <stdin>, line 1: not JSON"),
    (["--task_name=rte", "--input_format=jsonl"], '{"text": 3}\n',
     'error: <stdin>, line 1: expected an object with a string "text_a"'),
])
def test_bad_input_is_a_clear_error(exported, args, stdin, message):
    result = _predict(exported[1], *args, stdin=stdin)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_empty_and_over_long_texts_get_predictions(exported, tmp_path):
    long_text = " ".join(["cat"] * 5000)
    out = tmp_path / "out.jsonl"
    bad = tmp_path / "in.tsv"
    bad.write_text(f"\t\n{long_text}\t{long_text}\nfine\n")
    result = _predict(exported[1], "--task_name=rte", f"--input_file={bad}",
                      f"--output_file={out}")
    # The third line has one text for a pair task: an error, and the output
    # file is not left half-written.
    assert result.returncode != 0 and "line 3" in result.stderr
    assert not out.exists() and not os.path.exists(f"{out}.tmp")
    bad.write_text(f"\t\n{long_text}\t{long_text}\n")
    result = _predict(exported[1], "--task_name=rte", f"--input_file={bad}",
                      f"--output_file={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5
               for r in rows)


def test_keras_model_file_round_trip(exported, tiny_glue):
    import keras
    import tensorflow as tf
    model_dir, export_dir = exported
    model = keras.models.load_model(os.path.join(export_dir, "model.keras"))
    assert [s[0] for s in model.task_specs] == ["rte", "sts"]
    out = model({"token_ids": tf.constant([[2, 5, 3]]),
                 "segment_ids": tf.zeros([1, 3], tf.int32),
                 "padding_mask": tf.ones([1, 3], tf.int32)})
    assert out["rte"].shape == (1, 2) and out["sts"].shape == (1,)


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                out[os.path.relpath(os.path.join(folder, name), root)] = (
                    f.read())
    return out


@pytest.mark.parametrize("form", ["saved_model", "keras_hub",
                                  "transformers"])
def test_an_export_never_writes_into_a_folder_it_does_not_own(
        exported, tmp_path, form):
    from bam_tf.serving.export import check_export_dir
    model_dir, export_dir = exported
    bam = os.path.dirname(os.path.dirname(model_dir))
    before = _files(model_dir)
    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "todo.txt").write_text("mine\n")
    refused = {
        model_dir: "the model folder it exports",
        os.path.join(model_dir, "outputs"): "the model folder it exports",
        bam: f"the BAM_DIR {os.path.realpath(bam)}",
        os.path.join(bam, "models", "other"): "a folder bam-tf keeps",
        os.path.join(bam, "cache", "x"): "a folder bam-tf keeps",
        str(stranger): "a non-empty folder that holds no earlier export",
    }
    for target, why in refused.items():
        with pytest.raises(ExportError, match="an export writes only into "
                           "a new or empty folder") as error:
            check_export_dir(model_dir, target, form)
        assert why in str(error.value), (target, str(error.value))
    # A model folder elsewhere (a copy of one, another BAM_DIR's).
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    (elsewhere / "results.json").write_text("{}\n")
    with pytest.raises(ExportError, match="is a model folder"):
        check_export_dir(model_dir, str(elsewhere), form)
    check_export_dir(model_dir, str(tmp_path / "new"), form)  # new: fine
    with pytest.raises(ExportError, match=r"^--export_dir=gs://b/e is a URL "
                       r"\(gs://\)"):
        check_export_dir(model_dir, "gs://b/e", form)
    if form == "saved_model":  # over an earlier export of the same format
        check_export_dir(model_dir, export_dir, form)
    # The script refuses before writing anything, one line, exit 1.
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "export.py"),
         f"--bam_dir={bam}", "--model_name=served",
         f"--export_dir={model_dir}", f"--format={form}",
         *(["--task=rte"] if form == "transformers" else [])],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: --export_dir={model_dir} is the model folder it exports")
    assert _files(model_dir) == before
    assert _files(stranger) == {"todo.txt": b"mine\n"}
