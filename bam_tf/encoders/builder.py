"""The encoder a run's configuration names."""

from bam_tf.encoders.encoder import build_debug_encoder
from bam_tf.encoders.encoder import load_encoder


def build_encoder(config, texts=(), vocabulary=None):
    """The run's encoder: pretrained (its dropout as its checkpoint sets
    it), or the debug encoder (vocabulary learned from `texts`, or the given
    one; dropout_rate inside it as in the heads). Random draws (the debug
    weights, dropout's seeds) come from Keras's global generator, which the
    caller seeds: building reseeds nothing.

    Example:
    >>> config = RunConfig(model_name="m", task_names=("rte",), debug=True)
    >>> encoder = build_encoder(config, texts=["a small example"])
    """
    if config.debug:
        return build_debug_encoder(
            texts, config.debug_vocab_size, config.debug_hidden_size,
            config.debug_num_layers,
            max_sequence_length=max(128, config.max_seq_length),
            vocabulary=vocabulary, dtype=config.mixed_precision,
            dropout=config.dropout_rate)
    return load_encoder(config.pretrained_model, config.bam_dir,
                        dtype=config.mixed_precision)
