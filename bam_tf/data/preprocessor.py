"""Raw text -> the model's inputs, one Keras layer for training's features
and the exported SavedModel alike, so that serving packs text exactly as
training did."""

import keras
import keras_hub
import tensorflow as tf

from bam_tf.encoders.families import family_of_tokenizer


@keras.saving.register_keras_serializable(package="bam_tf")
class BamPreprocessor(keras.layers.Layer):
    """Tokenizes and packs one or two texts as the tokenizer's encoder
    family does: `[CLS] a [SEP] b [SEP]` (BERT, ELECTRA, DistilBERT,
    ALBERT, DeBERTa-v3) or `<s> a </s></s> b </s>` (RoBERTa), segment ids 0
    then 1 (read only by families that have them), truncated longest first
    to `sequence_length` as BERT's `_truncate_seq_pair` does (keras-hub's
    round-robin trimmer keeps the same tokens).

    Args:
        tokenizer: the encoder's keras-hub tokenizer.
        sequence_length: the longest packed example (max_seq_length).

    Call arguments:
        x: a string tensor [batch] of texts, or a tuple (text_a, text_b).

    Returns:
        {"token_ids", "segment_ids", "padding_mask"}, int32
        [batch, longest example of the batch], as training batches are
        padded.

    Example:
    >>> preprocessor = BamPreprocessor(tokenizer, sequence_length=128)
    >>> inputs = preprocessor((tf.constant(["A man eats."]),
    ...                        tf.constant(["Someone eats."])))
    >>> logits = model(inputs)["rte"]
    """

    def __init__(self, tokenizer, sequence_length, **kwargs):
        super().__init__(**kwargs)
        # Strings stay TensorFlow tensors, as in keras-hub's preprocessors.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.packer = None
        self._eager_call = None

    def build(self, input_shape=None):
        # The packer reads the tokenizer's special ids: built here, not in
        # __init__, so that a loaded model's tokenizer has its vocabulary
        # (saved as an asset) by then, as in keras-hub's preprocessors.
        start, separator, end, pad = family_of_tokenizer(
            self.tokenizer).special_ids(self.tokenizer)
        self._separator_length = (len(separator)
                                  if isinstance(separator, list) else 1)
        self.packer = keras_hub.layers.MultiSegmentPacker(
            sequence_length=self.sequence_length, start_value=start,
            end_value=end, sep_value=separator, pad_value=pad,
            truncate="round_robin", name="packer")
        self.built = True

    def pack(self, *texts):
        """(token_ids, segment_ids) [batch, sequence_length], and each
        example's length before truncation [batch]."""
        if not self.built:
            self.build()
        segments = tuple(self.tokenizer(t) for t in texts)
        # Start and end tokens, and a separator between two texts.
        full = sum(s.row_lengths() for s in segments) + 2 + (
            len(segments) - 1) * self._separator_length
        token_ids, segment_ids = self.packer(segments)
        return token_ids, segment_ids, tf.cast(full, tf.int32)

    def call(self, x):
        texts = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        if tf.executing_eagerly():
            # keras-hub tokenizers give Python lists when called eagerly.
            if self._eager_call is None:
                self._eager_call = tf.function(self._inputs,
                                               reduce_retracing=True)
            return self._eager_call(*texts)
        return self._inputs(*texts)

    def _inputs(self, *texts):
        token_ids, segment_ids, full = self.pack(*texts)
        lengths = tf.minimum(full, self.sequence_length)
        mask = tf.sequence_mask(lengths, tf.shape(token_ids)[1], tf.int32)
        longest = tf.reduce_max(lengths)
        return {"token_ids": token_ids[:, :longest],
                "segment_ids": segment_ids[:, :longest],
                "padding_mask": mask[:, :longest]}

    def get_config(self):
        config = super().get_config()
        config.update({
            "tokenizer": keras.layers.serialize(self.tokenizer),
            "sequence_length": self.sequence_length,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.layers.deserialize(config["tokenizer"])
        return cls(**config)
