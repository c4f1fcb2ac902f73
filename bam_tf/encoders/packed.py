"""A keras-hub backbone run on packed rows (the layout of
`bam_tf.data.packing`).

keras-hub's backbones take `token_ids`, `segment_ids` and `padding_mask`
and number positions 0..T-1 along the row. A packed row holds several
examples, each numbered from 0 and seeing only its own tokens; the
backbones' own layers take both (`PositionEmbedding(positions=...)`,
`TransformerEncoder(attention_mask=...)`), so this runs those same named
layers in the order the backbone's functional graph does, with per-example
positions and a block-diagonal attention mask. Every variable is the
backbone's: presets, Hugging Face weights, layer-wise learning rates and
exports are unchanged.

DeBERTa-v3 has no absolute positions: its relative positions are the
differences of slots in a row, which within one example's contiguous
tokens are those of the example alone.
"""

import tensorflow as tf

from bam_tf.encoders.families import family_of


def packed_sentence_vectors(backbone, inputs, training=False):
    """Each example's sentence vector, [examples, hidden]: its first
    token's final state, through the backbone's pooler where the family
    reads the pooled output (BERT, ALBERT).

    Args:
        backbone: a keras-hub backbone of a supported family.
        inputs: a packed batch with its groups merged
            (`packing.merge_groups`): token_ids, segment_ids, positions,
            packing_ids [N, L]; cls_index [examples] into the N * L slots.
    """
    family = family_of(backbone)
    sequence = _RUNNERS[family.name](backbone, inputs, training)
    hidden = sequence.shape[-1]
    first = tf.gather(tf.reshape(sequence, [-1, hidden]), inputs["cls_index"])
    if family.sentence_vector == "pooled":
        return backbone.pooled_dense(first)
    return first


def attention_mask(packing_ids):
    """[N, L, L] bool: a token sees the tokens of its own example (ids
    `packing_ids`, 0 on empty slots, which nothing sees)."""
    ids = tf.convert_to_tensor(packing_ids)
    return tf.logical_and(ids[:, :, None] == ids[:, None, :],
                          (ids > 0)[:, None, :])


def _masks(inputs):
    ids = inputs["packing_ids"]
    return ids > 0, attention_mask(ids)


def _bert_like(backbone, inputs, training, project=False):
    """BERT, ELECTRA and ALBERT: token + position + segment embeddings."""
    tokens = backbone.token_embedding(inputs["token_ids"])
    positions = backbone.position_embedding(
        tokens, positions=inputs["positions"])
    segments = backbone.segment_embedding(inputs["segment_ids"])
    x = backbone.embeddings_add((tokens, positions, segments))
    x = backbone.embeddings_layer_norm(x)
    x = backbone.embeddings_dropout(x, training=training)
    if project:
        x = backbone.embeddings_projection(x)
    return x


def _run_layers(layers, x, inputs, training, **kwargs):
    padding, mask = _masks(inputs)
    for layer in layers:
        x = layer(x, padding_mask=padding, attention_mask=mask,
                  training=training, **kwargs)
    return x


def _bert(backbone, inputs, training):
    x = _bert_like(backbone, inputs, training)
    return _run_layers(backbone.transformer_layers, x, inputs, training)


def _electra(backbone, inputs, training):
    # As ElectraBackbone: projected only where the widths differ.
    project = backbone.hidden_dim != backbone.embedding_dim
    x = _bert_like(backbone, inputs, training, project=project)
    return _run_layers(backbone.transformer_layers, x, inputs, training)


def _albert(backbone, inputs, training):
    x = _bert_like(backbone, inputs, training, project=True)
    groups = backbone.transformer_layers
    calls_per_group = backbone.num_layers // len(groups)
    layers = [layer for group in groups for _ in range(calls_per_group)
              for layer in group]
    return _run_layers(layers, x, inputs, training)


def _roberta_like(backbone, inputs, training):
    """RoBERTa and DistilBERT: token and position embeddings in one layer,
    no segments."""
    x = backbone.embeddings(inputs["token_ids"],
                            positions=inputs["positions"])
    x = backbone.embeddings_layer_norm(x)
    x = backbone.embeddings_dropout(x, training=training)
    return _run_layers(backbone.transformer_layers, x, inputs, training)


def _deberta_v3(backbone, inputs, training):
    x = backbone.token_embedding(inputs["token_ids"])
    x = backbone.embeddings_layer_norm(x)
    x = backbone.embeddings_dropout(x, training=training)
    relative = backbone.relative_embeddings(x)
    return _run_layers(backbone.transformer_layers, x, inputs, training,
                       rel_embeddings=relative)


_RUNNERS = {
    "bert": _bert,
    "electra": _electra,
    "albert": _albert,
    "roberta": _roberta_like,
    "distil_bert": _roberta_like,
    "deberta_v3": _deberta_v3,
}
