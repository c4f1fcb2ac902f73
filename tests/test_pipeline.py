import numpy as np
import pytest
from scipy import stats

from bam_tf.data import pipeline
from bam_tf.data.batching import Batching
from bam_tf.data.batching import bucket_boundaries
from bam_tf.data.features import Features
from bam_tf.data.sampling import steps_per_epoch
from bam_tf.data.sampling import task_sampling_probabilities
from bam_tf.tasks import get_task

from conftest import fake_features

RTE, STS, MRPC = get_task("rte"), get_task("sts"), get_task("mrpc")


def test_probabilities_by_hand():
    sizes = [100, 400, 900]
    np.testing.assert_allclose(
        task_sampling_probabilities(sizes, 1.0), [1 / 14, 4 / 14, 9 / 14])
    np.testing.assert_allclose(
        task_sampling_probabilities(sizes, 0.0), [1 / 3] * 3)
    np.testing.assert_allclose(
        task_sampling_probabilities(sizes, 0.5), [10 / 60, 20 / 60, 30 / 60])
    w = np.array([100 ** 0.75, 400 ** 0.75, 900 ** 0.75])
    np.testing.assert_allclose(
        task_sampling_probabilities(sizes, 0.75), w / w.sum())
    assert steps_per_epoch(sizes, 128) == 1400 // 128


@pytest.mark.parametrize("exponent", [0.0, 0.75, 1.0])
def test_drawn_task_frequencies_match(exponent):
    tasks = [RTE, STS, MRPC]
    sizes = [30, 120, 480]
    features = [fake_features(t, n) for t, n in zip(tasks, sizes)]
    ds, probabilities = pipeline.train_dataset(
        tasks, features, batch_size=100, seed=3, exponent=exponent)
    counts = np.zeros(3)
    for batch in ds.take(40):  # 4000 examples
        counts += np.bincount(batch["task_id"].numpy(), minlength=3)
    expected = task_sampling_probabilities(sizes, exponent)
    np.testing.assert_allclose(probabilities, expected)
    # Pearson's chi-squared test at a strict level: sampling error only.
    p = stats.chisquare(counts, expected * counts.sum()).pvalue
    assert p > 1e-3, (counts, expected * counts.sum())
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.03)


def test_same_element_structure_and_teacher_slots():
    features = [fake_features(RTE, 6), fake_features(STS, 6)]
    teachers = {"rte": np.arange(12, dtype=np.float32).reshape(6, 2),
                "sts": np.full(6, 0.25, np.float32)}
    a = pipeline.example_dataset(RTE, 0, features[0], 2, teachers["rte"])
    b = pipeline.example_dataset(STS, 1, features[1], 2)
    assert a.element_spec == b.element_spec
    first = next(iter(a))
    assert first["teacher_logits"].numpy().tolist() == [0.0, 1.0]
    assert first["has_teacher"].numpy() == 1.0
    assert first["padding_mask"].dtype.name == "int32"
    sts = list(b.as_numpy_iterator())
    assert sts[-1]["target"] == pytest.approx(1.0)  # 5.0 scaled
    assert sts[0]["has_teacher"] == 0.0


def test_dynamic_and_static_padding():
    features = [fake_features(RTE, 10, length=4)]
    ds, _ = pipeline.train_dataset([RTE], features, batch_size=4, seed=0)
    assert ds.element_spec["token_ids"].shape.as_list() == [4, None]
    batch = next(iter(ds))
    assert batch["token_ids"].shape[1] <= 6
    ds, _ = pipeline.train_dataset([RTE], features, batch_size=4, seed=0,
                                   batching=Batching("max_length", 16))
    assert ds.element_spec["token_ids"].shape.as_list() == [4, 16]


@pytest.mark.parametrize("static", [False, True])
def test_eval_yields_every_example_once(static):
    features = fake_features(STS, 11)
    ds = pipeline.eval_dataset(
        STS, 0, features, 4, 2,
        Batching("max_length", 16) if static else Batching("longest"))
    eids, real, sizes = [], [], []
    for batch in ds.as_numpy_iterator():
        eids += batch["eid"].tolist()
        real += batch["is_real"].tolist()
        sizes.append(len(batch["eid"]))
    kept = [e for e, r in zip(eids, real) if r]
    assert kept == list(range(11))
    if static:
        assert sizes == [4, 4, 4] and real.count(0.0) == 1
        assert all(s.shape.is_fully_defined() for s in ds.element_spec.values())
    else:
        assert sizes == [4, 4, 3] and 0.0 not in real


def test_select_reorders_features():
    features = fake_features(RTE, 5)  # lengths 5 6 7 5 6
    picked = features.select([2, 0])
    assert picked.eids.tolist() == [2, 0]
    assert picked.lengths.tolist() == [7, 5]
    np.testing.assert_array_equal(picked.row(0)[0], features.row(2)[0])
    np.testing.assert_array_equal(picked.row(1)[0], features.row(0)[0])
    assert picked.labels.tolist() == [0, 0]


def test_bucketed_eval_sorts_by_length_and_pads_to_buckets():
    features = fake_features(RTE, 9, length=10)  # lengths 10 11 12 ...
    lengths = features.lengths.copy()
    lengths[[1, 4]] = 20  # two long ones: 11 -> 20, 11 -> 20
    features = Features(**{**features.__dict__, "lengths": lengths,
                           "token_ids": np.resize(features.token_ids,
                                                  lengths.sum()),
                           "segment_ids": np.zeros(lengths.sum(), np.int32)})
    ds = pipeline.eval_dataset(RTE, 0, features, 4, 2,
                               Batching("buckets", 32))  # 16, 32
    batches = list(ds.as_numpy_iterator())
    # Lengths 10 20 12 10 20 12 10 11 12 sort (stably) to eids
    # 0 3 6 7 | 2 5 8 1 | 4, longest 11, 20, 20: padded to 16, 32, 32.
    assert [b["eid"].tolist() for b in batches] == [[0, 3, 6, 7],
                                                    [2, 5, 8, 1], [4]]
    assert [b["token_ids"].shape[1] for b in batches] == [16, 32, 32]
    for batch in batches:
        for row, eid in enumerate(batch["eid"]):
            n = lengths[eid]
            assert batch["padding_mask"][row].sum() == n
            np.testing.assert_array_equal(batch["token_ids"][row, :n],
                                          features.row(int(eid))[0])


def test_bucketing_keeps_task_frequencies_and_few_shapes():
    tasks = [RTE, STS, MRPC]
    sizes = [40, 160, 640]
    features = [fake_features(t, n, length=4 + 20 * i)
                for i, (t, n) in enumerate(zip(tasks, sizes))]
    ds, probabilities = pipeline.train_dataset(
        tasks, features, batch_size=50, seed=1,
        batching=Batching("buckets", 64))
    counts = np.zeros(3)
    shapes = set()
    for batch in ds.take(80):  # 4000 examples
        counts += np.bincount(batch["task_id"].numpy(), minlength=3)
        shapes.add(batch["token_ids"].shape[1])
        lengths = batch["padding_mask"].numpy().sum(1)
        # Padded to the smallest bucket length that holds the longest.
        assert batch["token_ids"].shape[1] == min(
            b for b in (16, 32, 64) if b >= lengths.max())
    assert shapes <= {16, 32, 64}
    p = stats.chisquare(counts, probabilities * counts.sum()).pvalue
    assert p > 1e-3, (counts, probabilities * counts.sum())
    assert bucket_boundaries(100) == [16, 32, 64, 100]


def test_tpu_mode_shapes_are_fully_static():
    tasks = [RTE, STS]
    features = [fake_features(t, 30) for t in tasks]
    static = Batching("max_length", 32)
    train, _ = pipeline.train_dataset(tasks, features, 8, seed=0,
                                      batching=static)
    evals = [pipeline.eval_dataset(t, i, f, 8, 2, static)
             for i, (t, f) in enumerate(zip(tasks, features))]
    for ds in [train] + evals:
        for key, spec in ds.element_spec.items():
            assert spec.shape.is_fully_defined(), (key, spec)


@pytest.mark.parametrize("padding", ["max_length", "buckets"])
def test_every_iterator_sees_the_same_stream(padding):
    # A resumed run makes its own iterators and skips the batches already
    # trained on: it must meet the batches the killed run would have.
    features = [fake_features(RTE, 24, length=3),
                fake_features(STS, 40, length=9)]
    ds, _ = pipeline.train_dataset(
        [RTE, STS], features, batch_size=8, seed=1,
        batching=Batching(padding, 32, smallest_bucket=8))  # 8, 16, 32
    first = [(b["task_id"].numpy(), b["eid"].numpy()) for b in ds.take(24)]
    assert len({tuple(e) for _, e in first[:8]}) > 1  # shuffled, mixed
    for skip in (0, 5, 13):
        again = [(b["task_id"].numpy(), b["eid"].numpy())
                 for b in ds.skip(skip).take(24 - skip)]
        for (t1, e1), (t2, e2) in zip(first[skip:], again):
            np.testing.assert_array_equal(t1, t2)
            np.testing.assert_array_equal(e1, e2)
