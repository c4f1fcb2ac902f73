"""Evaluation and written outputs without training: MNLI's two dev sets and
three submission files, atomic writes."""

import csv
import os

import keras
import numpy as np
import pytest

from bam_tf.data.batching import Batching
from bam_tf.encoders.builder import build_encoder
from bam_tf.experiment import evaluation
from bam_tf.experiment.inputs import RunInputs
from bam_tf.io_utils import atomic_open
from bam_tf.model.factory import build_model
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.outputs import OutputFileError
from bam_tf.store.outputs import read_predictions

from conftest import debug_config


def test_mnli_scores_and_submission_files(tiny_glue, tmp_path):
    config = debug_config(tmp_path, tiny_glue, "mnli", ["mnli", "rte"],
                          padding="max_length", eval_batch_size=4)
    data = RunInputs.read(config)
    keras.utils.set_random_seed(1)
    encoder = build_encoder(config, vocabulary=data.vocabulary)
    model = build_model(encoder.backbone, [t.head_spec for t in data.tasks])
    batching = Batching.of(config)
    scores, avg = evaluation.evaluate(model, data, evaluation.predict_splits(
        model, data, data.dev_splits(), batching, config.eval_batch_size))
    assert set(scores["mnli"]) == {"accuracy", "score",
                                   "accuracy_dev_mismatched",
                                   "score_dev_mismatched"}
    assert avg == pytest.approx(
        (scores["mnli"]["score"] + scores["rte"]["score"]) / 2)
    # Scores equal those recomputed from the written dev predictions.
    folder = ModelDir(str(tmp_path), "out")
    mdir = folder.path
    splits = evaluation.output_splits(data, 1, 1, 1)
    predictions = evaluation.predict_splits(model, data, splits, batching,
                                            config.eval_batch_size)
    assert evaluation.evaluate(model, data, predictions) == (scores, avg)
    evaluation.write_outputs(data, folder, 1, predictions, splits)
    dev = read_predictions(os.path.join(
        mdir, "outputs", "mnli_dev_mismatched_predictions_1.npz"))
    labels = data.eval_features[("mnli", "dev_mismatched")].labels
    accuracy = 100 * np.mean(dev["logits"].argmax(-1) == labels)
    assert scores["mnli"]["accuracy_dev_mismatched"] == pytest.approx(
        accuracy)
    glue = os.path.join(mdir, "outputs", "glue", "1")
    assert sorted(os.listdir(glue)) == ["AX.tsv", "MNLI-m.tsv",
                                        "MNLI-mm.tsv", "RTE.tsv"]
    for name, rows in (("MNLI-m.tsv", 7), ("MNLI-mm.tsv", 7), ("AX.tsv", 5)):
        with open(os.path.join(glue, name)) as f:
            table = list(csv.reader(f, delimiter="\t"))
        assert table[0] == ["index", "prediction"] and len(table) == rows + 1
        assert {r[1] for r in table[1:]} <= {"entailment", "neutral",
                                             "contradiction"}
    train = read_predictions(os.path.join(
        mdir, "outputs", "mnli_train_predictions_1.npz"))
    assert train["num_examples"] == 30 and train["logits"].shape == (30, 3)


def test_atomic_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(str(path)) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]  # no temporary left


def test_reading_a_non_predictions_file(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, eid=np.arange(3))
    with pytest.raises(OutputFileError, match="not a bam-tf predictions"):
        read_predictions(str(path))
