import numpy as np
import pytest
from scipy import stats

from bam_tf.tasks import get_task
from bam_tf.tasks import scoring


def test_binary_metrics_by_hand_and_scipy():
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    predictions = np.array([1, 1, 0, 0, 0, 1, 1, 0])
    # tp 3, fn 1, fp 1, tn 3
    assert scoring.accuracy(labels, predictions) == 6 / 8
    assert scoring.f1(labels, predictions) == pytest.approx(2 * 3 / (6 + 2))
    assert scoring.mcc(labels, predictions) == pytest.approx(
        (3 * 3 - 1 * 1) / np.sqrt(4 * 4 * 4 * 4))
    # MCC is Pearson's r of the two binary vectors.
    assert scoring.mcc(labels, predictions) == pytest.approx(
        stats.pearsonr(labels, predictions)[0])
    assert scoring.mcc(labels, np.ones(8)) == 0.0  # undefined -> 0


def test_correlations_equal_scipy():
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, 50)
    predictions = labels + rng.normal(0, 1, 50)
    assert scoring.pearson(labels, predictions) == pytest.approx(
        stats.pearsonr(labels, predictions)[0])
    assert scoring.spearman(labels, predictions) == pytest.approx(
        stats.spearmanr(labels, predictions)[0])
    assert scoring.spearman(labels, np.zeros(50)) == 0.0


def test_task_scores_and_glue_average():
    sts = scoring.score_split(get_task("sts"), [1.0, 2.0, 3.0],
                              [1.0, 3.0, 2.5])
    assert sts["score"] == sts["spearman"] == pytest.approx(50.0)
    mrpc = scoring.score_split(get_task("mrpc"), [1, 0],
                               [[0.0, 1.0], [0.0, 1.0]])
    assert mrpc["accuracy"] == 50.0 and mrpc["f1"] == pytest.approx(200 / 3)
    cola = scoring.score_split(get_task("cola"), [1, 0], [[0, 1], [1, 0]])
    assert cola["score"] == cola["mcc"] == 100.0
    tasks = [get_task("sts"), get_task("wnli"), get_task("mrpc")]
    scores = {"sts": {"score": 80.0}, "wnli": {"score": 10.0},
              "mrpc": {"score": 90.0}}
    assert scoring.glue_average(scores, tasks) == 85.0  # WNLI left out
