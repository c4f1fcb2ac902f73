"""The preprocessing layer: packing by hand-checkable ids, the same rows as
training's features, and a save/load round trip."""

import keras
import numpy as np
import tensorflow as tf

from bam_tf.data.examples import Examples
from bam_tf.data.features import Featurizer
from bam_tf.data.preprocessor import BamPreprocessor
from bam_tf.encoders.encoder import build_debug_encoder
from bam_tf.encoders.encoder import SPECIAL_TOKENS

TEXTS_A = ["a b c d", "e", ""]
TEXTS_B = ["f g", "h i j k", "a"]


def _tokenizer():
    vocabulary = list(SPECIAL_TOKENS) + list("abcdefghijk")
    return build_debug_encoder([], vocabulary=vocabulary,
                               hidden_size=8, num_layers=1).tokenizer


def _id(token, tokenizer):
    return tokenizer.token_to_id(token)


def test_pairs_are_packed_and_truncated_longest_first():
    tokenizer = _tokenizer()
    out = BamPreprocessor(tokenizer, sequence_length=7)(
        (tf.constant(TEXTS_A), tf.constant(TEXTS_B)))
    ids = lambda s: [_id(t, tokenizer) for t in s.split()]
    # 4 + 2 tokens for 7 - 3 places: the longer text loses its last
    # tokens until the two are even (BERT's _truncate_seq_pair).
    expected = [ids("[CLS] a b [SEP] f g [SEP]"),
                ids("[CLS] e [SEP] h i j [SEP]"),
                ids("[CLS] [SEP] a [SEP]") + [0, 0, 0]]
    np.testing.assert_array_equal(out["token_ids"], expected)
    np.testing.assert_array_equal(out["segment_ids"], [
        [0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(out["padding_mask"].numpy().sum(1),
                                  [7, 7, 4])


def test_a_batch_is_trimmed_to_its_longest_example():
    out = BamPreprocessor(_tokenizer(), sequence_length=32)(
        tf.constant(["a b", "c"]))
    assert out["token_ids"].shape == (2, 4)  # [CLS] a b [SEP]


def test_same_rows_as_training_features():
    tokenizer = _tokenizer()
    examples = Examples(task="rte", split="dev", eids=np.arange(3),
                        text_a=TEXTS_A, text_b=TEXTS_B,
                        labels=np.zeros(3, np.int64), num_rows=3,
                        source="written here")
    features = Featurizer(tokenizer, 7).featurize(examples)
    out = BamPreprocessor(tokenizer, 7)((tf.constant(TEXTS_A),
                                         tf.constant(TEXTS_B)))
    token_ids, segment_ids = features.padded(7)
    np.testing.assert_array_equal(out["token_ids"], token_ids)
    np.testing.assert_array_equal(out["segment_ids"], segment_ids)


@keras.saving.register_keras_serializable(package="bam_tf_tests")
class _Holder(keras.Model):
    def __init__(self, preprocessor, **kwargs):
        super().__init__(**kwargs)
        self.preprocessor = preprocessor

    def call(self, x):
        return self.preprocessor(x)

    def get_config(self):
        return {**super().get_config(),
                "preprocessor": keras.layers.serialize(self.preprocessor)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["preprocessor"] = keras.layers.deserialize(
            config["preprocessor"])
        return cls(**config)


def test_save_and_load_round_trip(tmp_path):
    holder = _Holder(BamPreprocessor(_tokenizer(), sequence_length=7))
    path = str(tmp_path / "holder.keras")
    holder.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.preprocessor.get_config() == (
        holder.preprocessor.get_config())
    texts = (tf.constant(TEXTS_A), tf.constant(TEXTS_B))
    for key, value in holder(texts).items():
        np.testing.assert_array_equal(loaded(texts)[key], value)
