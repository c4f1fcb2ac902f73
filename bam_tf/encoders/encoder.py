"""The encoder: a keras-hub backbone of a supported family
(`bam_tf.encoders.families`: BERT, RoBERTa, ELECTRA, DeBERTa-v3, DistilBERT, ALBERT)
and the tokenizer from the same source.

Sources (`--pretrained_model`): a local keras-hub preset folder, a local
Hugging Face folder of a family keras-hub converts (BERT, RoBERTa,
DistilBERT, ALBERT), an original Google BERT TF1 checkpoint folder, a bare
name looked up under `BAM_DIR/pretrained_models/`, or a keras-hub preset
name or handle (`bert_base_en_uncased`, `roberta_base_en`, `kaggle://...`,
`hf://...`) downloaded by keras-hub where the network allows. `--debug`
builds a tiny random BERT with a vocabulary learned from the data, as the
original's debug mode did.
"""

import collections
import dataclasses
import json
import os
import re

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from bam_tf.encoders.families import FAMILIES
from bam_tf.encoders.families import FamilyError
from bam_tf.encoders.families import check_pair
from bam_tf.encoders.families import family_of_hf
from bam_tf.errors import BamError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# BERT's basic tokenization: runs of word characters, or one punctuation mark.
_WORD_RE = re.compile(r"\w+|[^\w\s]")


class EncoderError(BamError):
    pass


@dataclasses.dataclass
class Encoder:
    """A backbone and its tokenizer.

    Attributes:
        backbone: a keras-hub backbone of a supported family.
        tokenizer: the family's keras-hub tokenizer.
        source: where it came from, for messages and the run's record.
        kind: "preset", "keras_hub_folder", "hf_folder", "tf1_checkpoint"
            or "debug".
    """

    backbone: keras.Model
    tokenizer: keras.layers.Layer
    source: str
    kind: str

    @property
    def position_limit(self):
        return self.backbone.max_sequence_length

    @property
    def num_layers(self):
        return self.backbone.num_layers


def detect_folder_kind(folder):
    """Which loader a local folder needs; an error if none fits."""
    files = set(os.listdir(folder))
    if "bert_config.json" in files and "vocab.txt" in files and any(
            f.startswith("bert_model.ckpt") and f.endswith(".index")
            for f in files):
        return "tf1_checkpoint"
    if "config.json" in files:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            try:
                config = json.load(f)
            except json.JSONDecodeError as e:
                raise EncoderError(
                    f"{folder}/config.json is not valid JSON: {e}") from None
        if "model_type" in config:
            family = family_of_hf(config["model_type"])
            if family is None:
                raise EncoderError(
                    f"{folder}: a Hugging Face {config['model_type']!r} "
                    "model, not of a supported encoder family "
                    f"({', '.join(sorted(FAMILIES))}).")
            if not family.hf_convertible:
                raise EncoderError(
                    f"{folder}: a Hugging Face {family.name} model; "
                    f"keras-hub cannot convert {family.name} folders from "
                    "Hugging Face's format. Use a keras-hub preset of the "
                    f"family ({family.backbone}.from_preset(...) then "
                    "save_to_preset(FOLDER)) and pass that folder.")
            if not ({"model.safetensors", "model.safetensors.index.json"}
                    & files):
                raise EncoderError(
                    f"{folder}: a Hugging Face {family.name} config without "
                    "model.safetensors; keras-hub loads safetensors weights "
                    "only (convert pytorch_model.bin first).")
            return "hf_folder"
        if "class_name" in config or "registered_name" in config:
            return "keras_hub_folder"
    raise EncoderError(
        f"{folder}: not a supported encoder folder. Expected a keras-hub "
        "preset folder (config.json with class_name, model.weights.h5), a "
        "Hugging Face folder (config.json with model_type bert, roberta, "
        "distilbert or albert, model.safetensors, tokenizer files) or a "
        "Google BERT TF1 checkpoint "
        "(bert_config.json, vocab.txt, bert_model.ckpt.index/.data-*).")


def resolve_pretrained(name, bam_dir=None):
    """(kind, location): a folder path, a name under BAM_DIR/pretrained_models,
    or else a keras-hub preset name or handle."""
    if os.path.isdir(name):
        return detect_folder_kind(name), os.path.abspath(name)
    if bam_dir:
        local = os.path.join(bam_dir, "pretrained_models", name)
        if os.path.isdir(local):
            return detect_folder_kind(local), os.path.abspath(local)
    if os.sep in name and "://" not in name:
        raise EncoderError(
            f"--pretrained_model={name!r}: no such folder.")
    return "preset", name


def load_encoder(pretrained_model, bam_dir=None, dtype=None):
    """Loads a pretrained encoder and its tokenizer from one source.

    `dtype` is a Keras dtype policy name for the backbone (e.g.
    "mixed_bfloat16"); None keeps float32.
    """
    kind, location = resolve_pretrained(pretrained_model, bam_dir)
    if kind == "tf1_checkpoint":
        backbone, tokenizer = _load_tf1_checkpoint(location, dtype)
    else:
        try:
            backbone = keras_hub.models.Backbone.from_preset(
                location, dtype=dtype)
            tokenizer = keras_hub.models.Tokenizer.from_preset(location)
        except Exception as e:
            where = ("keras-hub preset (needs the network to download)"
                     if kind == "preset" else "folder")
            raise EncoderError(
                f"Could not load the encoder {pretrained_model!r} as a "
                f"{where}: {type(e).__name__}: {e}") from e
        try:
            check_pair(backbone, tokenizer)
        except FamilyError as e:
            raise EncoderError(f"{pretrained_model}: {e}") from None
    return Encoder(backbone, tokenizer, location, kind)


def build_debug_encoder(texts, vocabulary_size=1000, hidden_size=64,
                        num_layers=2, max_sequence_length=128,
                        vocabulary=None, dtype=None, dropout=0.1):
    """A tiny random BERT and a WordPiece vocabulary learned from `texts`
    (or the given `vocabulary`, e.g. the one of a run it continues).

    The vocabulary is computed from the given texts only, so the same data
    gives the same vocabulary (and the feature cache stays valid). The
    weights are drawn from Keras's global generator: the caller seeds it
    (a trial does, once, at its start); building reseeds nothing.
    """
    vocab = list(vocabulary) if vocabulary else debug_vocabulary(
        texts, vocabulary_size)
    tokenizer = debug_tokenizer(vocab)
    num_heads = max(1, hidden_size // 32)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab), num_layers=num_layers,
        num_heads=num_heads, hidden_dim=hidden_size,
        intermediate_dim=4 * hidden_size,
        max_sequence_length=max_sequence_length, dropout=dropout,
        dtype=dtype)
    return Encoder(backbone, tokenizer, "debug", "debug")


def debug_tokenizer(vocabulary):
    """The debug encoder's tokenizer over `vocabulary`."""
    return keras_hub.models.BertTokenizer(vocabulary=list(vocabulary),
                                          lowercase=True)


# Texts per task and column the debug vocabulary is learned from.
DEBUG_VOCAB_TEXTS = 2000


def debug_vocabulary_texts(examples_list):
    """The training texts a debug vocabulary is learned from: the first
    DEBUG_VOCAB_TEXTS of each column of each task."""
    texts = []
    for examples in examples_list:
        texts += examples.text_a[:DEBUG_VOCAB_TEXTS]
        texts += (examples.text_b or [])[:DEBUG_VOCAB_TEXTS]
    return texts


def debug_vocabulary(texts, vocabulary_size):
    """A WordPiece vocabulary for the debug encoder: the special tokens,
    every character seen (alone and as a `##` continuation, so nothing maps
    to [UNK]) and the most frequent lower-cased words.

    keras-hub's `compute_word_piece_vocabulary` learns a better one but
    takes seconds even on a few hundred sentences; a debug run needs neither.
    """
    counts = collections.Counter()
    for text in texts:
        counts.update(_WORD_RE.findall(text.lower()))
    chars = sorted({c for word in counts for c in word})
    vocab = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars]
    seen = set(vocab)
    words = sorted(counts, key=lambda w: (-counts[w], w))
    for word in words:
        if len(vocab) >= vocabulary_size:
            break
        if word not in seen:
            vocab.append(word)
            seen.add(word)
    return vocab


# ------------------------------------------------- original BERT checkpoints
def _tf1_weight_map(num_layers):
    """keras-hub (layer name, attribute path) -> TF1 BERT variable name."""
    names = {
        ("token_embedding", "embeddings"): "bert/embeddings/word_embeddings",
        ("position_embedding", "position_embeddings"):
            "bert/embeddings/position_embeddings",
        ("segment_embedding", "embeddings"):
            "bert/embeddings/token_type_embeddings",
        ("embeddings_layer_norm", "gamma"): "bert/embeddings/LayerNorm/gamma",
        ("embeddings_layer_norm", "beta"): "bert/embeddings/LayerNorm/beta",
        ("pooled_dense", "kernel"): "bert/pooler/dense/kernel",
        ("pooled_dense", "bias"): "bert/pooler/dense/bias",
    }
    for i in range(num_layers):
        layer = f"transformer_layer_{i}"
        tf1 = f"bert/encoder/layer_{i}"
        for part in ("query", "key", "value"):
            for w in ("kernel", "bias"):
                names[(layer, f"_self_attention_layer.{part}_dense.{w}")] = (
                    f"{tf1}/attention/self/{part}/{w}")
        for w in ("kernel", "bias"):
            names[(layer, f"_self_attention_layer.output_dense.{w}")] = (
                f"{tf1}/attention/output/dense/{w}")
            names[(layer, f"_feedforward_intermediate_dense.{w}")] = (
                f"{tf1}/intermediate/dense/{w}")
            names[(layer, f"_feedforward_output_dense.{w}")] = (
                f"{tf1}/output/dense/{w}")
        for w in ("gamma", "beta"):
            names[(layer, f"_self_attention_layer_norm.{w}")] = (
                f"{tf1}/attention/output/LayerNorm/{w}")
            names[(layer, f"_feedforward_layer_norm.{w}")] = (
                f"{tf1}/output/LayerNorm/{w}")
    return names


def backbone_variable(backbone, layer_name, attribute_path):
    obj = backbone.get_layer(layer_name)
    for attr in attribute_path.split("."):
        obj = getattr(obj, attr)
    return obj


def _load_tf1_checkpoint(folder, dtype=None):
    with open(os.path.join(folder, "bert_config.json"), encoding="utf-8") as f:
        bert_config = json.load(f)
    prefix = os.path.join(folder, "bert_model.ckpt")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as e:
        raise EncoderError(f"{prefix}: unreadable TF1 checkpoint: {e}") from e
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=bert_config["vocab_size"],
        num_layers=bert_config["num_hidden_layers"],
        num_heads=bert_config["num_attention_heads"],
        hidden_dim=bert_config["hidden_size"],
        intermediate_dim=bert_config["intermediate_size"],
        dropout=bert_config.get("hidden_dropout_prob", 0.1),
        max_sequence_length=bert_config["max_position_embeddings"],
        num_segments=bert_config.get("type_vocab_size", 2), dtype=dtype)
    available = reader.get_variable_to_shape_map()
    for (layer, attr), tf1_name in _tf1_weight_map(
            backbone.num_layers).items():
        if tf1_name not in available:
            raise EncoderError(
                f"{prefix}: variable {tf1_name!r} is missing; is this an "
                "original BERT checkpoint?")
        variable = backbone_variable(backbone, layer, attr)
        value = reader.get_tensor(tf1_name)
        # TF1 keeps attention projections as [hidden, hidden] matrices;
        # keras-hub splits heads out: [hidden, heads, head_dim] (and the
        # transpose for the output projection).
        variable.assign(np.reshape(value, variable.shape))
    vocab_file = os.path.join(folder, "vocab.txt")
    lowercase = bert_config.get("do_lower_case")
    if lowercase is None:
        # Decide from the vocabulary itself, never from the folder's name:
        # an uncased vocabulary holds no upper-case word pieces.
        with open(vocab_file, encoding="utf-8") as f:
            words = [w.strip() for w in f if w.strip()]
        lowercase = not any(
            w != w.lower() for w in words
            if not (w.startswith("[") and w.endswith("]")))
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=vocab_file, lowercase=lowercase)
    return backbone, tokenizer
