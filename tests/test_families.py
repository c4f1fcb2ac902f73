"""Every encoder family on a tiny random backbone with a tiny vocabulary:
exact ids of a hand-written pair, layer depths, one- and two-task runs
from a keras-hub preset folder, and export/predict."""

import json
import os
import subprocess
import sys

import keras_hub
import numpy as np
import pytest

from bam_tf.data.examples import Examples
from bam_tf.data.features import Featurizer
from bam_tf.data.loading import load_split
from bam_tf.encoders.encoder import EncoderError
from bam_tf.encoders.encoder import detect_folder_kind
from bam_tf.encoders.encoder import load_encoder
from bam_tf.encoders.families import FAMILIES
from bam_tf.experiment.run import train_and_evaluate
from bam_tf.model.bam_model import BamModel
from bam_tf.model.optimization import layer_depth
from bam_tf.model.optimization import layerwise_multipliers
from bam_tf.serving.export import export_model
from bam_tf.serving.hf_folder import write_hf_folder
from bam_tf.tasks import get_task
from conftest import debug_config
from conftest import tiny_encoder

M = keras_hub.models


def _examples(a, b):
    return Examples(task="rte", split="dev", eids=np.array([0]),
                    text_a=[a], text_b=[b], labels=None, num_rows=1,
                    source="test")


def _ids(tokenizer, *pieces):
    return [tokenizer.token_to_id(p) for p in pieces]


def _pair_and_expected(name, tokenizer):
    """A hand-written pair and its packed ids (length 12)."""
    if name == "roberta":
        # <s>=0 air=16 plane=20 Ġat=22 </s></s>=2 2 air=16 port=27 </s>=2;
        # "airport" opens its text: no Ġ.
        return ("airplane at", "airport"), [0, 16, 20, 22, 2, 2, 16, 27, 2]
    if name in ("bert", "electra", "distil_bert"):
        # [CLS]=2 the=11 cat=12 [SEP]=3 sat=13 [SEP]=3.
        return ("the cat", "sat"), [2, 11, 12, 3, 13, 3]
    cls, sep = _ids(tokenizer, "[CLS]", "[SEP]")
    return ("the cat", "sat"), [cls, *_ids(tokenizer, "▁the", "▁cat"), sep,
                                *_ids(tokenizer, "▁sat"), sep]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_featurize_hand_written_pair(name):
    _, tokenizer = tiny_encoder(name)
    (a, b), expected = _pair_and_expected(name, tokenizer)
    assert None not in expected and 1 not in expected  # no unknown pieces
    examples = _examples(a, b)
    features = Featurizer(tokenizer, 12).featurize(examples)
    token_ids, segment_ids = features.row(0)
    assert token_ids.tolist() == expected
    first = expected.index(expected[-1]) + (2 if name == "roberta" else 1)
    assert segment_ids.tolist() == [0] * first + [1] * (len(expected) - first)
    assert features.full_lengths.tolist() == [len(expected)]


# One variable per depth; L = 2: embeddings 4, layer 0 -> 3, layer 1 -> 2,
# pooler 1, heads 0.
DEPTHS = {
    "bert": {"token_embedding/embeddings": 4,
             "transformer_layer_0/feedforward_output_dense/kernel": 3,
             "transformer_layer_1/self_attention_layer/query/kernel": 2,
             "pooled_dense/kernel": 1},
    "roberta": {"embeddings/token_embedding/embeddings": 4,
                "transformer_layer_0/feedforward_output_dense/kernel": 3,
                "transformer_layer_1/self_attention_layer/query/kernel": 2},
    "electra": {"token_embedding/embeddings": 4,
                "transformer_layer_0/feedforward_output_dense/kernel": 3,
                "transformer_layer_1/self_attention_layer/query/kernel": 2},
    "deberta_v3": {
        "token_embedding/embeddings": 4,
        "rel_embedding/rel_embeddings_layer_norm/gamma": 4,
        "disentangled_attention_encoder_layer_0/feedforward_output_dense/"
        "kernel": 3,
        "disentangled_attention_encoder_layer_1/self_attention_layer/query/"
        "kernel": 2},
    "distil_bert": {
        "token_and_position_embedding/token_embedding/embeddings": 4,
        "transformer_layer_0/feedforward_output_dense/kernel": 3,
        "transformer_layer_1/self_attention_layer/query/kernel": 2},
    # One group shared by both layers: the top layer's depth.
    "albert": {"embedding_projection/kernel": 4,
               "group_0_inner_layer_0/self_attention_layer/query/kernel": 2,
               "pooled_dense/kernel": 1},
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_layer_depths(name):
    backbone, _ = tiny_encoder(name)
    model = BamModel(backbone, [("rte", 2, False)])
    model({"token_ids": np.ones([1, 4], np.int32),
           "segment_ids": np.zeros([1, 4], np.int32),
           "padding_mask": np.ones([1, 4], np.int32)})
    paths = {v.path for v in backbone.trainable_variables}
    rates = layerwise_multipliers(model, backbone, 0.5)
    for path, depth in DEPTHS[name].items():
        assert path in paths, (path, sorted(paths))
        assert layer_depth(path, backbone, paths) == depth, path
        assert rates[path] == 0.5 ** depth, path
    head = f"{model.name}/rte_head/kernel"
    assert layer_depth(head, backbone, paths) == 0
    assert rates[head] == 1.0
    if name == "electra":  # the unused, untrained pooler is frozen
        assert not any(p.startswith("pooled_dense/") for p in paths)


def test_shared_albert_groups_take_their_top_layer():
    albert = FAMILIES["albert"]
    # 12 layers in 3 groups of 4: group 0 serves layers 0-3, top 3.
    assert albert.depth("group_0_inner_layer_0/x/kernel", 12, 3) == 13 - 3
    assert albert.depth("group_2_inner_layer_1/x/kernel", 12, 3) == 13 - 11


@pytest.fixture(scope="module")
def preset_folders(tmp_path_factory):
    folders = {}
    for name in FAMILIES:
        folder = str(tmp_path_factory.mktemp(f"preset_{name}"))
        backbone, tokenizer = tiny_encoder(name)
        backbone.save_to_preset(folder)
        tokenizer.save_to_preset(folder)
        folders[name] = folder
    return folders


PAIR = (["the cat sat", "airplane at airport"], ["a dog ran", "air"])

SERVE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
a, b = json.loads(sys.argv[1])
out = {}
for name, path in json.loads(sys.argv[2]).items():
    m = tf.saved_model.load(path)
    out[name] = {task: m.signatures["serving_default"](
        text_a=tf.constant(a), text_b=tf.constant(b),
        task=tf.constant(task))["score"].numpy().tolist()
        for task in ("rte", "sts")}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def family_runs(preset_folders, tiny_glue, tmp_path_factory):
    """Per family: a two-task run from its preset folder, the model
    exported, and the scores the model itself gives the test pair (top
    probability for rte, the score for sts). The number of tasks touches
    no family's code (test_run.py runs one task), so one run per family
    covers what differs between them: loading, featurizing, training,
    exporting."""
    from bam_tf.serving.export import load_trained_model
    runs = {}
    for name, folder in preset_folders.items():
        bam = tmp_path_factory.mktemp(f"runs_{name}")
        settings = dict(debug=False, pretrained_model=folder,
                        num_train_epochs=1, padding="packed",
                        max_train_examples=32, n_writes_distill=0,
                        n_writes_test=0)
        run_name = "rte-sts"
        results = train_and_evaluate(
            debug_config(bam, tiny_glue, run_name, ["rte", "sts"],
                         **settings), verbose=0)
        mdir = os.path.join(bam, "models", run_name)
        saved_model = export_model(mdir, str(bam / "export"))
        model, tokenizer, config, tasks = load_trained_model(mdir)
        features = Featurizer(tokenizer, config.max_seq_length).featurize(
            Examples(task="rte", split="dev", eids=np.arange(2),
                     text_a=PAIR[0], text_b=PAIR[1], labels=None,
                     num_rows=2, source="test"))
        token_ids, segment_ids = features.padded(config.max_seq_length)
        mask = (np.arange(config.max_seq_length)[None]
                < features.lengths[:, None])
        out = model({"token_ids": token_ids, "segment_ids": segment_ids,
                     "padding_mask": mask.astype(np.int32)})
        logits = np.asarray(out["rte"])
        probabilities = np.exp(logits) / np.exp(logits).sum(-1,
                                                            keepdims=True)
        # The reported RTE accuracy, recomputed by hand from the saved
        # model on the dev set.
        dev = load_split(tasks[0], "dev", tiny_glue)
        dev_features = Featurizer(tokenizer, config.max_seq_length).featurize(
            dev)
        dev_ids, dev_segments = dev_features.padded(config.max_seq_length)
        dev_mask = (np.arange(config.max_seq_length)[None]
                    < dev_features.lengths[:, None])
        dev_logits = np.asarray(model({
            "token_ids": dev_ids, "segment_ids": dev_segments,
            "padding_mask": dev_mask.astype(np.int32)})["rte"])
        dev_accuracy = 100.0 * np.mean(dev_logits.argmax(-1) == dev.labels)
        runs[name] = {"results": results, "saved_model": saved_model,
                      "dev_accuracy": dev_accuracy,
                      "expected": {"rte": probabilities.max(-1),
                                   "sts": tasks[1].unscale(
                                       np.asarray(out["sts"]))}}
    return runs


@pytest.fixture(scope="module")
def served(family_runs):
    """Every family's SavedModel answering the pair in one fresh process
    with TensorFlow and tensorflow-text only (`python -I`)."""
    result = subprocess.run(
        [sys.executable, "-I", "-c", SERVE, json.dumps(PAIR),
         json.dumps({n: r["saved_model"] for n, r in family_runs.items()})],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_two_task_run_trains_and_scores(name, family_runs):
    [trial] = family_runs[name]["results"]["trials"]
    assert np.isfinite(trial["train_loss"]).all() and trial["steps"] > 0
    assert set(trial["metrics"]) == {"rte", "sts"}
    assert trial["avg"] == pytest.approx(np.mean(
        [trial["metrics"][t]["score"] for t in ("rte", "sts")]))
    # The score written is the saved model's accuracy on the dev set.
    assert trial["metrics"]["rte"]["accuracy"] == pytest.approx(
        family_runs[name]["dev_accuracy"], abs=1e-9)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_export_answers_as_the_model(name, family_runs, served):
    for task, expected in family_runs[name]["expected"].items():
        np.testing.assert_allclose(served[name][task], expected, atol=1e-4,
                                   err_msg=f"{name} {task}")


def test_unconvertible_hugging_face_folders_name_folder_and_family(tmp_path):
    for model_type, family in (("electra", "electra"),
                               ("deberta-v2", "deberta_v3")):
        folder = tmp_path / model_type
        folder.mkdir()
        (folder / "config.json").write_text(
            json.dumps({"model_type": model_type}))
        (folder / "model.safetensors").write_bytes(b"")
        with pytest.raises(EncoderError) as e:
            load_encoder(str(folder))
        assert str(folder) in str(e.value) and family in str(e.value)
        assert "cannot convert" in str(e.value)
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(EncoderError, match="not of a supported"):
        load_encoder(str(folder))


def test_teacher_of_another_encoder_is_said(tmp_path, tiny_glue, caplog):
    from bam_tf.experiment.teachers import warn_if_other_encoder
    teacher_dir = tmp_path / "models" / "teacher"
    teacher_dir.mkdir(parents=True)
    (teacher_dir / "config.json").write_text(json.dumps(
        {"debug": False, "pretrained_model": "roberta_base_en"}))
    student = debug_config(tmp_path, tiny_glue, "student", ["rte"],
                           debug=False, pretrained_model="bert_base_en")
    with caplog.at_level("WARNING"):
        warn_if_other_encoder(student, "teacher")
    assert "roberta_base_en" in caplog.text and "bert_base_en" in caplog.text
    caplog.clear()
    same = debug_config(tmp_path, tiny_glue, "student", ["rte"],
                        debug=False, pretrained_model="roberta_base_en")
    with caplog.at_level("WARNING"):
        warn_if_other_encoder(same, "teacher")
    assert "across encoders" not in caplog.text


def test_unsupported_backbone_and_tokenizer_are_named():
    from bam_tf.encoders.families import FamilyError
    from bam_tf.encoders.families import check_pair
    from bam_tf.encoders.families import family_of
    gpt2 = M.GPT2Backbone(vocabulary_size=10, num_layers=1, num_heads=1,
                          hidden_dim=8, intermediate_dim=8,
                          max_sequence_length=8)
    with pytest.raises(FamilyError, match="GPT2Backbone: not the backbone"):
        family_of(gpt2)
    backbone, _ = tiny_encoder("bert")
    _, roberta_tokenizer = tiny_encoder("roberta")
    with pytest.raises(FamilyError, match="bert backbone needs a "
                       "BertTokenizer, not a RobertaTokenizer"):
        check_pair(backbone, roberta_tokenizer)


@pytest.mark.parametrize("name", ["roberta", "distil_bert", "albert"])
def test_hugging_face_folder_loads_the_same_encoder(name, tmp_path):
    """A Hugging Face folder as bam-tf exports one (through the inverse of
    keras-hub's converter) loads as an encoder, ids and outputs equal."""
    backbone, tokenizer = tiny_encoder(name)
    folder = str(tmp_path / "hf")
    model = BamModel(backbone, [get_task("rte").head_spec])
    ones = np.ones((1, 4), "int32")
    model({"token_ids": ones, "segment_ids": 0 * ones, "padding_mask": ones})
    write_hf_folder(model, tokenizer, get_task("rte"), 12, folder)
    assert detect_folder_kind(folder) == "hf_folder"
    loaded = load_encoder(folder)
    assert type(loaded.backbone) is type(backbone)
    assert type(loaded.tokenizer) is type(tokenizer)
    (a, b), expected = _pair_and_expected(name, tokenizer)
    features = Featurizer(loaded.tokenizer, 12).featurize(_examples(a, b))
    assert features.row(0)[0].tolist() == expected
    token_ids, segment_ids = features.padded(12)
    inputs = {"token_ids": token_ids, "segment_ids": segment_ids,
              "padding_mask": (np.arange(12)[None]
                               < features.lengths[:, None]).astype("int32")}
    family = FAMILIES[name]
    inputs = {k: inputs[k] for k in family.backbone_inputs()}
    ours, theirs = backbone(inputs), loaded.backbone(inputs)
    if isinstance(ours, dict):
        ours, theirs = ours["sequence_output"], theirs["sequence_output"]
    np.testing.assert_allclose(np.asarray(theirs), np.asarray(ours),
                               atol=1e-5)
