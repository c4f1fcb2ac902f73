"""Shared fixtures: tiny GLUE-format data, tiny vocabularies and encoders.

TensorFlow is imported once per session; two logical CPU devices are made
(pytest_configure) before anything initialises it, so distribution tests
can use MirroredStrategy.
"""

import contextlib
import os
import random
import socket
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_GLUE = os.path.join(os.path.dirname(REPO), "shared", "glue_data")

WORDS = ("the cat dog sat ran on a mat big small red blue house tree man "
         "woman saw ate fish bird sky green old new good bad").split()


def pytest_configure(config):
    # Here, not at import, so that subprocess drivers importing this module
    # (multi-worker workers need one device each) keep their devices.
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_addoption(parser):
    parser.addoption("--run-large", action="store_true",
                     help="run tests marked large (downloads, long runs)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-large"):
        return
    skip = pytest.mark.skip(reason="large; opt in with --run-large")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip)


def _sentence(rng, n=None):
    return " ".join(rng.choice(WORDS) for _ in range(n or rng.randint(3, 8)))


def write_tsv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        if header is not None:
            f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(str(x) for x in row) + "\n")


def make_tiny_glue(root, n_train=64, n_dev=24, n_test=10, seed=0):
    """Learnable GLUE-format tasks in their real layouts.

    rte: entailment iff text b contains "yes"; mrpc: 1 iff text a contains
    "same"; sts: score = 5 if text b contains "match" else 1 (plus a little
    noise); cola (header-less train/dev): 1 iff the sentence contains "ok".
    """
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        rows_rte, rows_mrpc, rows_sts, rows_cola = [], [], [], []
        for i in range(n):
            label = i % 2
            a, b = _sentence(rng), _sentence(rng)
            rows_rte.append([i, a, b + (" yes" if label else " no"),
                             "entailment" if label else "not_entailment"])
            rows_mrpc.append([label, 1000 + i, 2000 + i,
                              a + (" same" if label else " other"), b])
            score = (5.0 if label else 1.0) - rng.random() * 0.5
            rows_sts.append([i, "main", "f", "2012", i, "s", "s", a,
                             b + (" match" if label else " miss"),
                             f"{score:.3f}"])
            rows_cola.append(["src", label, "",
                              a + (" ok" if label else " bad")])
        if split == "test":
            write_tsv(f"{root}/RTE/test.tsv",
                      ["index", "sentence1", "sentence2"],
                      [r[:3] for r in rows_rte])
            write_tsv(f"{root}/MRPC/test.tsv",
                      ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                      [[i] + r[1:] for i, r in enumerate(rows_mrpc)])
            write_tsv(f"{root}/STS-B/test.tsv",
                      ["index", "genre", "filename", "year", "old_index",
                       "source1", "source2", "sentence1", "sentence2"],
                      [r[:9] for r in rows_sts])
            write_tsv(f"{root}/CoLA/test.tsv", ["index", "sentence"],
                      [[i, r[3]] for i, r in enumerate(rows_cola)])
            continue
        write_tsv(f"{root}/RTE/{split}.tsv",
                  ["index", "sentence1", "sentence2", "label"], rows_rte)
        write_tsv(f"{root}/MRPC/{split}.tsv",
                  ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                  rows_mrpc)
        write_tsv(f"{root}/STS-B/{split}.tsv",
                  ["index", "genre", "filename", "year", "old_index",
                   "source1", "source2", "sentence1", "sentence2", "score"],
                  rows_sts)
        write_tsv(f"{root}/CoLA/{split}.tsv", None, rows_cola)
    _make_tiny_mnli(root, rng)
    return root


MNLI_LABELS = ("entailment", "neutral", "contradiction")


def _make_tiny_mnli(root, rng):
    """MNLI's layouts: 12 fields in train, 16 in dev (gold label last), 10 in
    test; the diagnostic set in its own folder."""
    def row(i, fields, label=None):
        parse = "( x )"
        values = [i, 100 + i, f"{i}e", "fiction", parse, parse, parse, parse,
                  _sentence(rng), _sentence(rng)]
        if label is not None:
            values += [label] * (fields - len(values))
        return values
    header = lambda n: [f"c{j}" for j in range(n)]
    write_tsv(f"{root}/MNLI/train.tsv", header(12),
              [row(i, 12, MNLI_LABELS[i % 3]) for i in range(30)])
    for split in ("dev_matched", "dev_mismatched"):
        write_tsv(f"{root}/MNLI/{split}.tsv", header(16),
                  [row(i, 16, MNLI_LABELS[i % 3]) for i in range(9)])
    for split in ("test_matched", "test_mismatched"):
        write_tsv(f"{root}/MNLI/{split}.tsv", header(10),
                  [row(i, 10) for i in range(7)])
    write_tsv(f"{root}/diagnostic/diagnostic.tsv",
              ["index", "sentence1", "sentence2"],
              [[i, _sentence(rng), _sentence(rng)] for i in range(5)])


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs for the whole session:
    a second one in the same process can reuse the first's collective
    instance keys ("Shape mismatch in the collective instance")."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2
    return tf.distribute.MirroredStrategy(devices)


@pytest.fixture(scope="session")
def tiny_glue(tmp_path_factory):
    return make_tiny_glue(str(tmp_path_factory.mktemp("glue")))


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c",
              "d", "e", "##s", "the", "cat", "sat", "dog", "ran", "."]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    import keras_hub
    return keras_hub.models.BertTokenizer(vocabulary=TINY_VOCAB,
                                          lowercase=True)


def tiny_backbone(vocabulary_size=len(TINY_VOCAB), hidden=32, layers=2,
                  max_sequence_length=64, seed=0, dropout=0.1, dtype=None):
    import keras
    import keras_hub
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size, num_layers=layers, num_heads=2,
        hidden_dim=hidden, intermediate_dim=2 * hidden,
        max_sequence_length=max_sequence_length, dropout=dropout,
        dtype=dtype)


def fake_features(task, n, length=5, labels=None):
    """`n` featurized examples of `task` of lengths length..length+2, token
    ids counting up, without a tokenizer."""
    import numpy as np
    from bam_tf.data.features import Features
    lengths = np.array([length + i % 3 for i in range(n)], np.int32)
    total = int(lengths.sum())
    if labels is None:
        labels = (np.linspace(0, 5, n).astype(np.float32)
                  if task.is_regression else np.arange(n, dtype=np.int32) % 2)
    return Features(task=task.name, split="train",
                    eids=np.arange(n, dtype=np.int64), labels=labels,
                    token_ids=np.arange(total, dtype=np.int32) % 50 + 5,
                    segment_ids=np.zeros(total, np.int32), lengths=lengths,
                    full_lengths=lengths)


def train_three_steps(make_stream, specs, jit_compile=False,
                      jit_update=False, policy=None, **schedule):
    """Three steps of a tiny dropout-free model on the stream
    `make_stream()` gives, from the same weights and batches whatever the
    arguments (dropout off: XLA draws its own random bits); `schedule`:
    `TrainSchedule` arguments besides the total steps. (history, what the
    updates moved, flattened)."""
    import keras
    import numpy as np
    from bam_tf.model.bam_model import BamModel
    from bam_tf.model.optimization import build_optimizer
    from bam_tf.model.schedule import TrainSchedule
    keras.utils.set_random_seed(0)
    model = BamModel(tiny_backbone(vocabulary_size=60, seed=3, dropout=0.0,
                                   dtype=policy), specs, dropout_rate=0.0,
                     dtype=policy)
    # Made after the seed is set: TensorFlow's seeded random ops (the
    # stream's shuffling and sampling) combine the global seed with their
    # own, so the same batches need the same global seed.
    ds = make_stream()
    model(next(iter(ds)))
    initial = [v.numpy() for v in model.trainable_weights]
    model.compile(optimizer=build_optimizer(model, model.backbone, 1e-3, 6,
                                            warmup_proportion=0.0,
                                            lr_decay=0.9,
                                            jit_update=jit_update),
                  schedule=TrainSchedule(total_steps=6, **schedule),
                  jit_compile=jit_compile)
    history = model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)
    moved = np.concatenate([(v.numpy() - w).ravel() for v, w in zip(
        model.trainable_weights, initial)])
    return history.history, moved


def debug_config(bam_dir, glue_dir, model_name, task_names, **overrides):
    """A fast tiny-encoder configuration for end-to-end tests."""
    from bam_tf.config import PRESETS
    from bam_tf.config import RunConfig
    values = {**PRESETS["debug"], "model_name": model_name,
              "bam_dir": str(bam_dir), "glue_dir": glue_dir,
              "task_names": list(task_names), "max_seq_length": 32,
              "debug_hidden_size": 32, "debug_vocab_size": 200,
              "max_train_examples": None, "train_batch_size": 16,
              "num_train_epochs": 3.0, "learning_rate": 3e-3,
              "eval_each_epoch": False}
    values.update(overrides)
    return RunConfig.from_dict(values)


def distribute_config(bam_dir, glue_dir, name):
    """The run test_distribute.py and its multi-worker driver compare with
    one device. Dropout off: each replica draws its own masks, one device
    draws others."""
    return debug_config(bam_dir, glue_dir, name, ["rte", "sts"],
                        num_train_epochs=2, padding="max_length",
                        dropout_rate=0.0)


@contextlib.contextmanager
def claim_of_a_live_process(path):
    """A claim file at `path` (a model folder's claims/trial_<k>.json)
    held by a live process of this machine, a sleeper killed on exit;
    yields the process."""
    from bam_tf.io_utils import atomic_write_json
    live = subprocess.Popen([sys.executable, "-c",
                             "import time; time.sleep(300)"])
    try:
        atomic_write_json(path, {
            "host": socket.gethostname(), "pid": live.pid, "started": None,
            "claimed_at": 0.0, "heartbeat": 0.0})
        yield live
    finally:
        live.kill()
        live.wait()


SIZES = dict(num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
             max_sequence_length=64)

# A tiny byte-level BPE: every merge's parts and product are in the
# vocabulary. "airplane at" -> air plane Ġat; "airport" -> air port.
ROBERTA_VOCAB = ["<s>", "<pad>", "</s>", "<unk>", "<mask>",
                 "a", "i", "r", "p", "l", "n", "e", "t", "o", "Ġ",
                 "ai", "air", "pl", "pla", "ne", "plane", "Ġa", "Ġat", "Ġai",
                 "Ġair", "po", "rt", "port"]
ROBERTA_MERGES = ["a i", "ai r", "p l", "pl a", "n e", "pla ne", "Ġ a",
                  "Ġa t", "Ġa i", "Ġai r", "p o", "r t", "po rt"]


def tiny_sentencepiece(specials):
    """A word-level SentencePiece model over the test data's words."""
    import io
    import sentencepiece
    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(WORDS)] * 3 + WORDS),
        model_writer=out, vocab_size=len(WORDS) + 5, model_type="WORD",
        pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        pad_piece=specials[0], unk_piece=specials[1],
        bos_piece="[CLS]", eos_piece="[SEP]", user_defined_symbols="[MASK]",
        minloglevel=2)
    return out.getvalue()


def tiny_encoder(name):
    """(backbone, tokenizer) of a family, tiny and random."""
    import keras_hub
    from bam_tf.encoders.families import FAMILIES
    M = keras_hub.models
    if name in ("bert", "electra", "distil_bert"):
        tokenizer = getattr(M, FAMILIES[name].tokenizer)(
            vocabulary=TINY_VOCAB, lowercase=True)
    elif name == "roberta":
        tokenizer = M.RobertaTokenizer(
            vocabulary={t: i for i, t in enumerate(ROBERTA_VOCAB)},
            merges=ROBERTA_MERGES)
    elif name == "deberta_v3":
        tokenizer = M.DebertaV3Tokenizer(
            proto=tiny_sentencepiece(("[PAD]", "[UNK]")))
    else:
        tokenizer = M.AlbertTokenizer(proto=tiny_sentencepiece(("<pad>", "<unk>")))
    vocabulary_size = tokenizer.vocabulary_size()
    if name == "electra":
        backbone = M.ElectraBackbone(vocab_size=vocabulary_size,
                                     embedding_dim=16, **SIZES)
    elif name == "albert":
        backbone = M.AlbertBackbone(vocabulary_size=vocabulary_size,
                                    embedding_dim=16, **SIZES)
    else:
        backbone = getattr(M, FAMILIES[name].backbone)(
            vocabulary_size=vocabulary_size, **SIZES)
    return backbone, tokenizer
