"""Examples -> token ids, with the encoder's own tokenizer and a keras-hub
packer (`BamPreprocessor`), cached on disk so that a second run tokenizes
nothing."""

import dataclasses
import hashlib
import json
import os
import zipfile
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from bam_tf.data.preprocessor import BamPreprocessor
from bam_tf.errors import BamError
from bam_tf.io_utils import atomic_save_npz


class FeatureCacheError(BamError):
    pass


@dataclasses.dataclass
class Features:
    """Packed token ids of one split, unpadded (ragged) and column-wise.

    Attributes:
        task, split: where they came from.
        eids: example ids (int64), in the order of the examples.
        labels: label indices or raw regression values, or None.
        token_ids: int32, every example's ids concatenated.
        segment_ids: int32, likewise.
        lengths: int32, each example's packed length (<= max_seq_length).
        full_lengths: int32, the length before truncation.
    """

    task: str
    split: str
    eids: np.ndarray
    labels: Optional[np.ndarray]
    token_ids: np.ndarray
    segment_ids: np.ndarray
    lengths: np.ndarray
    full_lengths: np.ndarray

    def __len__(self):
        return len(self.eids)

    def row(self, i):
        start = int(np.sum(self.lengths[:i]))
        end = start + int(self.lengths[i])
        return self.token_ids[start:end], self.segment_ids[start:end]

    def select(self, indices):
        """These features' examples at `indices`, in that order."""
        indices = np.asarray(indices, np.int64)
        starts = np.cumsum(self.lengths, dtype=np.int64) - self.lengths
        lengths = self.lengths[indices].astype(np.int64)
        # Each picked example's token positions, without a Python loop:
        # its start, plus 0..length-1.
        offsets = np.arange(lengths.sum()) - np.repeat(
            np.cumsum(lengths) - lengths, lengths)
        rows = np.repeat(starts[indices], lengths) + offsets
        return dataclasses.replace(
            self, eids=self.eids[indices],
            labels=None if self.labels is None else self.labels[indices],
            token_ids=self.token_ids[rows], segment_ids=self.segment_ids[rows],
            lengths=self.lengths[indices],
            full_lengths=self.full_lengths[indices])

    def padded(self, length=None):
        """Dense [n, length] token and segment ids (for inspection/export)."""
        length = length or int(self.lengths.max())
        n = len(self)
        token_ids = np.zeros((n, length), np.int32)
        segment_ids = np.zeros((n, length), np.int32)
        mask = np.arange(length)[None, :] < self.lengths[:, None]
        token_ids[mask] = self.token_ids
        segment_ids[mask] = self.segment_ids
        return token_ids, segment_ids


class Featurizer:
    """Packs examples with a `BamPreprocessor` (the same layer the exported
    model serves with) into unpadded columns, a batch of texts at a time.

    Example:
    >>> featurizer = Featurizer(tokenizer, max_seq_length=128)
    >>> features = featurizer.featurize(examples)
    """

    def __init__(self, tokenizer, max_seq_length, batch_size=2048):
        self._functions = {}
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.preprocessor = BamPreprocessor(tokenizer, max_seq_length)

    def fingerprint(self):
        """Changes whenever tokenization could give other ids."""
        h = hashlib.sha256()
        config = self.tokenizer.get_config()
        config.pop("vocabulary", None)
        config.pop("name", None)
        h.update(type(self.tokenizer).__name__.encode())
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
        h.update("\n".join(self.tokenizer.get_vocabulary()).encode())
        h.update(str(self.max_seq_length).encode())
        return h.hexdigest()

    def _pack_function(self, num_texts):
        # One trace per featurizer and text count (the keras-hub layers stay
        # in TensorFlow inside it; eager calls would return Python lists).
        if num_texts not in self._functions:
            spec = tf.TensorSpec([None], tf.string)
            self._functions[num_texts] = tf.function(
                self.preprocessor.pack, input_signature=[spec] * num_texts)
        return self._functions[num_texts]

    def _batches(self, columns):
        pack = self._pack_function(len(columns))
        for start in range(0, len(columns[0]), self.batch_size):
            chunk = [tf.constant(c[start:start + self.batch_size], tf.string)
                     for c in columns]
            yield (t.numpy() for t in pack(*chunk))

    def featurize(self, examples):
        columns = (examples.text_a,) if examples.text_b is None else (
            examples.text_a, examples.text_b)
        token_parts, segment_parts, lengths, full_lengths = [], [], [], []
        for token_ids, segment_ids, full in self._batches(columns):
            batch_lengths = np.minimum(full, self.max_seq_length)
            mask = (np.arange(self.max_seq_length)[None, :]
                    < batch_lengths[:, None])
            token_parts.append(token_ids[mask].astype(np.int32))
            segment_parts.append(segment_ids[mask].astype(np.int32))
            lengths.append(batch_lengths.astype(np.int32))
            full_lengths.append(full.astype(np.int32))
        cat = (lambda parts: np.concatenate(parts) if parts
               else np.zeros([0], np.int32))
        return Features(
            task=examples.task, split=examples.split, eids=examples.eids,
            labels=examples.labels, token_ids=cat(token_parts),
            segment_ids=cat(segment_parts), lengths=cat(lengths),
            full_lengths=cat(full_lengths))


def examples_fingerprint(examples):
    h = hashlib.sha256()
    h.update(f"{examples.task}\0{examples.split}\0".encode())
    h.update(np.ascontiguousarray(examples.eids).tobytes())
    for column in (examples.text_a, examples.text_b or []):
        h.update("\0".join(column).encode("utf-8", "surrogatepass"))
        h.update(b"\1")
    if examples.labels is not None:
        h.update(np.ascontiguousarray(examples.labels).tobytes())
    return h.hexdigest()


def cached_features(featurizer, examples, cache_dir=None):
    """Features of `examples`, read from `cache_dir` when the same examples
    were tokenized before with the same vocabulary and length.

    The cache key hashes the examples' texts, ids and labels and the
    tokenizer's vocabulary and settings, so stale features are never used.
    A damaged cache file is rebuilt, with a warning naming it: it holds
    nothing the examples do not.
    """
    if cache_dir is None:
        return featurizer.featurize(examples)
    key = hashlib.sha256(
        (examples_fingerprint(examples) + featurizer.fingerprint()).encode()
    ).hexdigest()[:20]
    path = os.path.join(
        cache_dir, f"{examples.task}_{examples.split}_{key}.npz")
    if os.path.exists(path):
        try:
            return _load_features(path, examples)
        except FeatureCacheError as e:
            logging.warning("%s; rebuilding it.", e)
    features = featurizer.featurize(examples)
    os.makedirs(cache_dir, exist_ok=True)
    atomic_save_npz(path, token_ids=features.token_ids,
                    segment_ids=features.segment_ids,
                    lengths=features.lengths,
                    full_lengths=features.full_lengths,
                    eids=features.eids)
    return features


def _load_features(path, examples):
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in (
                "token_ids", "segment_ids", "lengths", "full_lengths", "eids")}
    except (OSError, ValueError, EOFError, KeyError,
            zipfile.BadZipFile) as e:
        raise FeatureCacheError(
            f"{path}: damaged feature cache file ({type(e).__name__}: "
            f"{e})") from None
    total = int(arrays["lengths"].sum()) if len(arrays["lengths"]) else 0
    if (not np.array_equal(arrays["eids"], examples.eids)
            or len(arrays["token_ids"]) != total
            or len(arrays["segment_ids"]) != total):
        raise FeatureCacheError(
            f"{path}: the feature cache file does not match its examples "
            "(damaged or edited)")
    return Features(task=examples.task, split=examples.split,
                    labels=examples.labels, **arrays)
