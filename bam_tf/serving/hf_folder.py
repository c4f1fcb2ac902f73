"""One task of a trained student as a Hugging Face folder: `config.json`,
`model.safetensors` and the tokenizer's files, which transformers'
`AutoModelForSequenceClassification.from_pretrained(folder)` and
`AutoTokenizer.from_pretrained(folder)` load, and keras-hub's converters
load back (`--pretrained_model=folder`).

How BAM's head becomes the family's Hugging Face head (`hf_head`):

- BERT, ALBERT: the same computation: pooler, dropout, classifier.
- RoBERTa: Hugging Face puts dense + tanh before the classifier. The
  dense layer is `EPSILON` times the identity and the classifier's weight
  is BAM's divided by `EPSILON`: tanh(u) = u (1 - u^2/3 + ...), so the
  logits differ from BAM's by a relative (EPSILON |v|)^2 / 3, under 1e-6
  for first-token features |v| < 10.
- DistilBERT: Hugging Face puts dense + ReLU before the classifier. The
  dense layer is the identity plus a bias `c` that keeps every feature
  positive, the classifier's bias takes `W c` back off: exact, since the
  first token's vector is a LayerNorm output, bounded by
  |gamma| sqrt(hidden - 1) + |beta| (`relu_margin`).
- Regression (BAM: score = lo + (hi - lo) * sigmoid(w v + b)) has no
  Hugging Face twin, whose regression head is linear: the folder's
  `logits` are w v + b, and `config.json` says how to get the score
  (`bam_score`).
"""

import json
import os

import numpy as np
from safetensors.numpy import save as safetensors_bytes

from bam_tf.io_utils import atomic_open
from bam_tf.io_utils import atomic_write_json
from bam_tf.io_utils import atomic_write_text
from bam_tf.serving.hf_weights import HfExportError
from bam_tf.serving.hf_weights import hf_state_dict

# RoBERTa's dense + tanh layer is this times the identity (see above).
EPSILON = 1e-4


def relu_margin(backbone):
    """A bias under which no feature of DistilBERT's first-token vector
    can fall: each is gamma_i z_i + beta_i with |z_i| <= sqrt(hidden - 1)
    (a LayerNorm output's normalized entries), plus 1."""
    norm = backbone.transformer_layers[-1]._feedforward_layer_norm
    gamma = np.abs(norm.gamma.numpy())
    beta = np.abs(norm.beta.numpy())
    return float(np.max(gamma * np.sqrt(backbone.hidden_dim - 1) + beta)) + 1


def hf_config(backbone, family, task, max_seq_length):
    """The Hugging Face `config.json` of `backbone` with `task`'s head."""
    if family.name not in _ARCHITECTURES:
        raise HfExportError(
            f"{family.name}: keras-hub cannot load a Hugging Face "
            f"{family.name} folder back, so bam-tf does not write one; "
            "export to Hugging Face is for bert, roberta, distil_bert and "
            "albert (--format=keras_hub exports any family).")
    labels = list(task.label_list) if not task.is_regression else ["score"]
    common = {
        "architectures": [_ARCHITECTURES[family.name]],
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "label2id": {label: i for i, label in enumerate(labels)},
        "problem_type": ("regression" if task.is_regression
                         else "single_label_classification"),
        "vocab_size": backbone.vocabulary_size,
        "torch_dtype": "float32",
        "bam_task": task.name,
        "bam_max_seq_length": max_seq_length,
    }
    if task.is_regression:
        lo, hi = task.regression_range
        common["bam_score"] = (f"{lo} + {hi - lo} * sigmoid(logits[:, 0]): "
                               "BAM's regression head on labels scaled to "
                               "[0, 1]")
    if family.name == "distil_bert":
        return {**common, "model_type": "distilbert",
                "dim": backbone.hidden_dim, "n_layers": backbone.num_layers,
                "n_heads": backbone.num_heads,
                "hidden_dim": backbone.intermediate_dim,
                "max_position_embeddings": backbone.max_sequence_length,
                "activation": "gelu", "dropout": backbone.dropout,
                "attention_dropout": backbone.dropout,
                "seq_classif_dropout": backbone.dropout,
                "sinusoidal_pos_embds": False, "pad_token_id": 0}
    bert_like = {
        "hidden_size": backbone.hidden_dim,
        "num_hidden_layers": backbone.num_layers,
        "num_attention_heads": backbone.num_heads,
        "intermediate_size": backbone.intermediate_dim,
        "hidden_dropout_prob": backbone.dropout,
        "attention_probs_dropout_prob": backbone.dropout,
    }
    if family.name == "bert":
        # keras-hub's BERT uses the tanh approximation of GELU.
        return {**common, **bert_like, "model_type": "bert",
                "hidden_act": "gelu_new", "layer_norm_eps": 1e-12,
                "max_position_embeddings": backbone.max_sequence_length,
                "type_vocab_size": backbone.num_segments,
                "pad_token_id": 0}
    if family.name == "roberta":
        # Hugging Face keeps two position rows before the first position.
        return {**common, **bert_like, "model_type": "roberta",
                "hidden_act": "gelu", "layer_norm_eps": 1e-5,
                "max_position_embeddings": backbone.max_sequence_length + 2,
                "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0,
                "eos_token_id": 2}
    if family.name == "albert":
        return {**common, **bert_like, "model_type": "albert",
                "hidden_act": "gelu_new", "layer_norm_eps": 1e-12,
                "embedding_size": backbone.embedding_dim,
                "num_hidden_groups": backbone.num_groups,
                "inner_group_num": backbone.num_inner_repetitions,
                "max_position_embeddings": backbone.max_sequence_length,
                "type_vocab_size": backbone.num_segments,
                "classifier_dropout_prob": backbone.dropout,
                "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    raise AssertionError(family.name)  # every family of _ARCHITECTURES


_ARCHITECTURES = {
    "bert": "BertForSequenceClassification",
    "roberta": "RobertaForSequenceClassification",
    "distil_bert": "DistilBertForSequenceClassification",
    "albert": "AlbertForSequenceClassification",
}


def hf_head(model, family, task):
    """{Hugging Face key: array} of `task`'s head in the family's
    ForSequenceClassification layout (see the module docstring)."""
    kernel, bias = (np.asarray(w, np.float32)
                    for w in model.heads[task.name].get_weights())
    hidden = kernel.shape[0]
    if family.name in ("bert", "albert"):
        return {"classifier.weight": kernel.T.copy(),
                "classifier.bias": bias}
    if family.name == "roberta":
        return {"classifier.dense.weight": np.eye(hidden, dtype=np.float32)
                * EPSILON,
                "classifier.dense.bias": np.zeros(hidden, np.float32),
                "classifier.out_proj.weight": kernel.T / EPSILON,
                "classifier.out_proj.bias": bias}
    if family.name == "distil_bert":
        margin = np.full(hidden, relu_margin(model.backbone), np.float32)
        return {"pre_classifier.weight": np.eye(hidden, dtype=np.float32),
                "pre_classifier.bias": margin,
                "classifier.weight": kernel.T.copy(),
                "classifier.bias": (bias - margin @ kernel).astype(
                    np.float32)}
    raise HfExportError(f"{family.name}: no Hugging Face head.")


def write_tokenizer_files(tokenizer, family, export_dir, max_seq_length):
    """The tokenizer as Hugging Face's slow tokenizers read it (and
    keras-hub's converters): vocab.txt (WordPiece), vocab.json and
    merges.txt (RoBERTa's byte-level BPE) or spiece.model (ALBERT)."""
    config = {"model_max_length": max_seq_length}
    if family.name in ("bert", "distil_bert"):
        atomic_write_text(os.path.join(export_dir, "vocab.txt"),
                          "\n".join(tokenizer.get_vocabulary()) + "\n")
        config.update(
            tokenizer_class=("BertTokenizer" if family.name == "bert"
                             else "DistilBertTokenizer"),
            do_lower_case=bool(tokenizer.lowercase),
            # Hugging Face strips accents when it lowercases unless told;
            # keras-hub's WordPiece does only when asked.
            strip_accents=bool(tokenizer.strip_accents), unk_token="[UNK]",
            sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
            mask_token="[MASK]")
    elif family.name == "roberta":
        vocabulary = {token: i for i, token in enumerate(
            tokenizer.get_vocabulary())}
        atomic_write_text(os.path.join(export_dir, "vocab.json"),
                          json.dumps(vocabulary, ensure_ascii=False))
        atomic_write_text(os.path.join(export_dir, "merges.txt"),
                          "#version: 0.2\n" + "\n".join(tokenizer.merges)
                          + "\n")
        config.update(tokenizer_class="RobertaTokenizer", bos_token="<s>",
                      eos_token="</s>", sep_token="</s>", cls_token="<s>",
                      unk_token="<unk>", pad_token="<pad>",
                      mask_token="<mask>")
    elif family.name == "albert":
        with atomic_open(os.path.join(export_dir, "spiece.model"),
                         "wb") as f:
            f.write(_sentencepiece_proto(tokenizer))
        config.update(tokenizer_class="AlbertTokenizer", do_lower_case=True,
                      bos_token="[CLS]", eos_token="[SEP]", unk_token="<unk>",
                      sep_token="[SEP]", pad_token="<pad>", cls_token="[CLS]",
                      mask_token="[MASK]")
    atomic_write_json(os.path.join(export_dir, "tokenizer_config.json"),
                      config)


def _sentencepiece_proto(tokenizer):
    proto = getattr(tokenizer, "proto", None)
    if isinstance(proto, bytes):
        return proto
    return bytes(tokenizer._serialize_to_proto())


def write_hf_folder(model, tokenizer, task, max_seq_length, export_dir):
    """Writes `task`'s Hugging Face folder to `export_dir`; returns the
    config written."""
    family = model.family
    config = hf_config(model.backbone, family, task, max_seq_length)
    state = hf_state_dict(model.backbone, family, config)
    if family.name == "roberta":
        # Hugging Face's RoBERTa adds a one-row segment table that
        # keras-hub's has not: zeros add nothing.
        state["roberta.embeddings.token_type_embeddings.weight"] = np.zeros(
            (1, model.backbone.hidden_dim), np.float32)
    state.update(hf_head(model, family, task))
    os.makedirs(export_dir, exist_ok=True)
    with atomic_open(os.path.join(export_dir, "model.safetensors"),
                     "wb") as f:
        f.write(safetensors_bytes(
            {k: np.ascontiguousarray(v) for k, v in state.items()},
            metadata={"format": "pt"}))
    atomic_write_json(os.path.join(export_dir, "config.json"), config)
    write_tokenizer_files(tokenizer, family, export_dir, max_seq_length)
    return config
