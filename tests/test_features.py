import glob
import random

import numpy as np

from bam_tf.data.examples import Examples
from bam_tf.data.features import Featurizer
from bam_tf.data.features import cached_features


def _examples(pairs, task="rte", split="train"):
    return Examples(task=task, split=split,
                    eids=np.arange(len(pairs), dtype=np.int64),
                    text_a=[a for a, _ in pairs],
                    text_b=[b for _, b in pairs],
                    labels=np.zeros(len(pairs), np.int32),
                    num_rows=len(pairs), source="test")


def test_hand_written_pair(tiny_tokenizer):
    # vocab ids: [CLS] 2, [SEP] 3, a 5, ##s 10, the 11, cat 12, sat 13,
    # dog 14, ran 15, "." 16
    features = Featurizer(tiny_tokenizer, 16).featurize(
        _examples([("The cats sat.", "A dog ran")]))
    token_ids, segment_ids = features.row(0)
    assert token_ids.tolist() == [2, 11, 12, 10, 13, 16, 3, 5, 14, 15, 3]
    assert segment_ids.tolist() == [0] * 7 + [1] * 4
    assert features.full_lengths.tolist() == [11]


def test_longest_first_truncation(tiny_tokenizer):
    features = Featurizer(tiny_tokenizer, 8).featurize(
        _examples([("The cats sat.", "A dog ran")]))
    token_ids, segment_ids = features.row(0)
    # 5 + 3 tokens into a budget of 5: a loses two, then b one (ties
    # shorten b first, as BERT's _truncate_seq_pair does).
    assert token_ids.tolist() == [2, 11, 12, 10, 3, 5, 14, 3]
    assert segment_ids.tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert features.lengths.tolist() == [8]
    assert features.full_lengths.tolist() == [11]


def _bert_truncate(a, b, budget):
    """BERT's run_classifier._truncate_seq_pair, the reference."""
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        if len(a) > len(b):
            a.pop()
        else:
            b.pop()
    return a, b


def test_truncation_matches_bert_reference(tiny_tokenizer):
    rng = random.Random(0)
    words = ["a", "b", "c", "d", "e"]
    pairs = [(" ".join(rng.choice(words) for _ in range(rng.randint(1, 14))),
              " ".join(rng.choice(words) for _ in range(rng.randint(1, 14))))
             for _ in range(200)]
    max_len = 12
    features = Featurizer(tiny_tokenizer, max_len).featurize(_examples(pairs))
    vocab = {w: i for i, w in enumerate(tiny_tokenizer.get_vocabulary())}
    for i, (a, b) in enumerate(pairs):
        ta, tb = _bert_truncate([vocab[w] for w in a.split()],
                                [vocab[w] for w in b.split()], max_len - 3)
        expected = [2] + ta + [3] + tb + [3]
        assert features.row(i)[0].tolist() == expected, (a, b)


def test_single_text_and_padding(tiny_tokenizer):
    examples = _examples([("the cat", ""), ("a", "")])
    examples.text_b = None
    features = Featurizer(tiny_tokenizer, 8).featurize(examples)
    ids, segments = features.padded()
    assert ids.tolist() == [[2, 11, 12, 3], [2, 5, 3, 0]]
    assert segments.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]


def test_cache_is_reused_and_keyed_by_vocabulary(tiny_tokenizer, tmp_path,
                                                 monkeypatch):
    import keras_hub
    examples = _examples([("the cat", "a dog"), ("b", "c")])
    first = cached_features(Featurizer(tiny_tokenizer, 16), examples,
                            str(tmp_path))
    files = glob.glob(f"{tmp_path}/rte_train_*.npz")
    assert len(files) == 1

    def fail(*args):
        raise AssertionError("tokenized again")
    monkeypatch.setattr(Featurizer, "featurize", fail)
    second = cached_features(Featurizer(tiny_tokenizer, 16), examples,
                             str(tmp_path))
    np.testing.assert_array_equal(first.token_ids, second.token_ids)
    np.testing.assert_array_equal(first.segment_ids, second.segment_ids)
    monkeypatch.undo()

    other_vocab = tiny_tokenizer.get_vocabulary() + ["zebra"]
    other = keras_hub.models.BertTokenizer(vocabulary=other_vocab,
                                           lowercase=True)
    cached_features(Featurizer(other, 16), examples, str(tmp_path))
    cached_features(Featurizer(tiny_tokenizer, 8), examples, str(tmp_path))
    assert len(glob.glob(f"{tmp_path}/rte_train_*.npz")) == 3


def test_a_damaged_cache_file_is_rebuilt(tiny_tokenizer, tmp_path, caplog):
    examples = _examples([("the cat", "a dog")])
    first = cached_features(Featurizer(tiny_tokenizer, 16), examples,
                            str(tmp_path))
    [path] = glob.glob(f"{tmp_path}/rte_train_*.npz")
    with open(path, "r+b") as f:
        f.truncate(40)
    with caplog.at_level("WARNING", logger="absl"):
        again = cached_features(Featurizer(tiny_tokenizer, 16), examples,
                                str(tmp_path))
    assert f"{path}: damaged feature cache file" in caplog.text
    assert "rebuilding it" in caplog.text
    np.testing.assert_array_equal(again.token_ids, first.token_ids)
    # Rebuilt on disk: the next run reads it without a word.
    caplog.clear()
    cached_features(Featurizer(tiny_tokenizer, 16), examples, str(tmp_path))
    assert "damaged" not in caplog.text
