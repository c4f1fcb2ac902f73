"""A model folder written by bam-tf 0.2.0, read and continued by this
version (`bam_tf.store.migration`).

tests/data/folder_v0_2_0/ is a BAM_DIR holding one real folder trained by
the code of commit c7466ec (0.2.0): one debug trial of rte on the
`tiny_glue` files, padding "buckets" (0.2.0's default). How it was made:
tests/data/folder_v0_2_0.md. Every test works on a copy of it.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from bam_tf.config import RunConfig
from bam_tf.data.batching import Batching
from bam_tf.errors import RunError
from bam_tf.experiment.evaluation import evaluate
from bam_tf.experiment.evaluation import predict_splits
from bam_tf.experiment.inputs import RunInputs
from bam_tf.experiment.run import train_and_evaluate
from bam_tf.runtime import Runtime
from bam_tf.serving.export import load_trained_model
from bam_tf.store import identity as identity_lib
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.model_dir import format_results
from bam_tf.store.outputs import read_predictions
from bam_tf.store.outputs import text_hashes

from conftest import REPO

FIXTURE = os.path.join(REPO, "tests", "data", "folder_v0_2_0")
NAME = "rte-v020"
# Where 0.2.0's run read its data: outside its BAM_DIR, so saved absolute.
SAVED_GLUE_DIR = "/tmp/glue020"
TRIAL_1_FILES = ("checkpoints/trial_1.weights.h5",
                 "outputs/rte_dev_predictions_1.npz",
                 "outputs/rte_test_predictions_1.npz",
                 "outputs/rte_train_predictions_1.npz",
                 "outputs/glue/1/RTE.tsv")


@pytest.fixture
def folder(tmp_path):
    """The 0.2.0 folder, copied into a BAM_DIR of its own."""
    bam_dir = tmp_path / "bam"
    shutil.copytree(FIXTURE, bam_dir)
    return ModelDir(str(bam_dir), NAME)


def _files(folder):
    """{path relative to the folder: bytes} of its files but the lock (a
    start makes it, empty, and leaves it)."""
    files = {}
    for root, _, names in os.walk(folder.path):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder.path)
            if relative != ".lock":
                with open(path, "rb") as f:
                    files[relative] = f.read()
    return files


def _json(data):
    return json.loads(data.decode("utf-8"))


def test_reads_config_results_identity(folder):
    saved = folder.read_saved_config()
    assert saved["bam_dir"] == "." and saved["padding"] == "buckets"
    config = folder.read_config()
    # The BAM_DIR is where the folder is now; glue_dir was outside the
    # BAM_DIR, so it stays where it was.
    assert config.bam_dir == folder.bam_dir
    assert config.glue_dir == SAVED_GLUE_DIR
    assert config.pretrained_model is None
    assert (config.model_name, config.task_names) == (NAME, ("rte",))
    assert config.debug and config.debug_hidden_size == 16
    assert config.padding == "buckets"  # 0.2.0's default, as saved
    # Every saved value is read as it was written; keys added since take
    # their defaults.
    now = config.to_dict()
    assert {k: now[k] for k in saved if k != "bam_dir"} == {
        k: v for k, v in saved.items() if k != "bam_dir"}
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    assert {k: now[k] for k in set(now) - set(saved)} == {
        k: defaults[k] for k in set(now) - set(saved)}

    results = folder.read_results()
    [trial] = results["trials"]
    assert (trial["trial"], trial["seed"], trial["steps"]) == (1, 1, 12)
    assert trial["metrics"] == {"rte": {"accuracy": 50.0, "score": 50.0}}
    assert trial["avg"] == 50.0
    assert folder.finished_trials() == {1} and folder.has_checkpoints()
    with open(folder.file("results.txt"), encoding="utf-8") as f:
        assert f.read() == format_results(results)

    identity = folder.read_identity()
    assert identity["format"] == identity_lib.FORMAT
    assert identity_lib.experiment_differences(
        identity["experiment"], config.section("experiment")) == []
    assert identity["encoder"] == identity_lib.debug_encoder_fingerprint(
        config)
    assert sorted(identity["data"]) == ["rte/dev", "rte/train"]
    assert identity["teachers"] == {} and identity["init"] is None

    vocabulary = folder.read_vocabulary()
    assert vocabulary[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocabulary) <= config.debug_vocab_size


def test_current_code_adds_trial_2(folder, tiny_glue):
    before = _files(folder)
    config = folder.read_config().replace(glue_dir=tiny_glue)
    results = train_and_evaluate(config, runtime=Runtime(trials=(2,)),
                                 verbose=0)
    assert [t["trial"] for t in results["trials"]] == [1, 2]
    assert folder.read_results() == results
    [old] = _json(before["results.json"])["trials"]
    assert results["trials"][0] == old  # trial 1's record as 0.2.0 wrote it
    assert results["trials"][1]["seed"] == 2
    after = _files(folder)
    # Trial 1's files, the identity and the vocabulary are untouched.
    for name in TRIAL_1_FILES + ("identity.json", "vocab.txt"):
        assert after[name] == before[name], name
    assert {"checkpoints/trial_2.weights.h5",
            "outputs/rte_dev_predictions_2.npz",
            "outputs/glue/2/RTE.tsv"} <= set(after)
    runs = _json(after["runs.json"])["runs"]
    assert runs[0] == _json(before["runs.json"])["runs"][0]
    assert len(runs) == 2 and runs[1]["trials"] == [2]
    saved = _json(after["config.json"])
    assert saved["padding"] == "buckets" and saved["glue_dir"] == tiny_glue
    assert saved["num_trials"] == 2


def test_new_default_padding_is_another_run(folder, tiny_glue):
    default = RunConfig.__dataclass_fields__["padding"].default
    assert default != "buckets"  # the default 0.2.0 saved is no longer it
    before = _files(folder)
    config = folder.read_config().replace(glue_dir=tiny_glue,
                                          padding=default)
    # Named as the user gave it, not as the identity records it.
    with pytest.raises(RunError, match=r"another identity: it differs in "
                       r"experiment\.padding \(saved 'buckets', now "
                       f"'{default}'"):
        train_and_evaluate(config, runtime=Runtime(trials=(2,)), verbose=0)
    assert _files(folder) == before


def _weight_arrays(path):
    """The model's arrays in a .weights.h5 file (not the optimizer's)."""
    arrays = []
    with h5py.File(path, "r") as f:
        def visit(name, item):
            if isinstance(item, h5py.Dataset) and not name.startswith(
                    "optimizer/"):
                arrays.append(item[()])
        f.visititems(visit)
    return arrays


def test_trial_1_weights_load_and_predict(folder, tiny_glue):
    model, _, config, _ = load_trained_model(folder.path, 1)
    # Every weight of the model is one of the file's arrays, each used once.
    left = _weight_arrays(folder.weights_path(1))
    assert len(left) == len(model.weights)
    for variable in model.weights:
        value = variable.numpy()
        same = [i for i, a in enumerate(left) if a.shape == value.shape
                and np.array_equal(a, value)]
        assert same, f"{variable.path}: not loaded from the file"
        left.pop(same[0])

    inputs = RunInputs.read(config.replace(glue_dir=tiny_glue))
    # The debug vocabulary learned from the data now is the one saved.
    assert inputs.vocabulary == folder.read_vocabulary()
    predictions = predict_splits(model, inputs, inputs.dev_splits(),
                                 Batching.of(inputs.config),
                                 inputs.config.eval_batch_size)
    eids, logits = predictions[("rte", "dev")]
    saved = read_predictions(folder.predictions_path("rte", "dev", 1))
    assert sorted(eids.tolist()) == sorted(saved["eid"].tolist())
    np.testing.assert_allclose(logits[np.argsort(eids)],
                               saved["logits"][np.argsort(saved["eid"])],
                               rtol=0, atol=1e-5)
    # The saved file names the same examples as the data read now.
    examples, _ = inputs.split(0, "dev")
    np.testing.assert_array_equal(
        text_hashes(examples)[np.argsort(examples.eids)],
        saved["text_hash"][np.argsort(saved["eid"])])
    scores, avg = evaluate(model, inputs, predictions)
    [trial] = folder.read_results()["trials"]
    assert (scores, avg) == (trial["metrics"], trial["avg"])


def test_report_script(folder, tiny_glue, tmp_path):
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "report.py"),
         f"--bam_dir={folder.bam_dir}", f"--model_names={NAME}",
         f"--glue_dir={tiny_glue}", f"--output_json={out}",
         "--bootstrap_samples=100"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    model = json.loads(out.read_text())["models"][NAME]
    assert model["n_trials"] == 1
    assert model["median"] == {"rte": 50.0, "avg": 50.0}
