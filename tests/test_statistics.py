"""The statistics of the reports, on numbers computed by hand or by scipy
and numpy directly."""

import numpy as np
import pytest
from scipy import stats

from bam_tf.analysis import statistics
from bam_tf.tasks import scoring


def test_holm_bonferroni_by_hand():
    # sorted: 0.01 (x4) = 0.04; 0.02 (x3) = 0.06; 0.03 (x2) = 0.06 (kept
    # monotone); 0.5 (x1) = 0.5
    np.testing.assert_allclose(
        statistics.holm_bonferroni([0.03, 0.5, 0.01, 0.02]),
        [0.06, 0.5, 0.04, 0.06])
    np.testing.assert_allclose(statistics.holm_bonferroni([0.4, 0.6]),
                               [0.8, 0.8])
    assert statistics.holm_bonferroni([0.9, 0.8]).max() == 1.0
    assert [statistics.stars(p) for p in (0.0005, 0.005, 0.04, 0.2)] == [
        "***", "**", "*", ""]


def test_summaries_equal_numpy_and_scipy():
    values = [60.1, 58.3, 62.7, 59.9, 61.0]
    s = statistics.summarize(values)
    assert s["median"] == np.median(values)
    assert s["std"] == pytest.approx(stats.tstd(values))
    assert s["mean"] == pytest.approx(np.mean(values))
    assert (s["min"], s["max"]) == (58.3, 62.7)
    # One trial has no spread to show: None, not 0.
    assert statistics.summarize([61.0])["std"] is None


def test_bootstrap_identical_and_clearly_better():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    same = [np.where(rng.random(400) < 0.7, labels, 1 - labels)]
    assert statistics.paired_bootstrap(scoring.accuracy, labels, same, same,
                                   200) == 1.0
    better = [np.where(rng.random(400) < 0.9, labels, 1 - labels)]
    worse = [np.where(rng.random(400) < 0.6, labels, 1 - labels)]
    # No resampled difference (about 0.3 +- 0.03) comes near 0: the
    # smallest p that 500 draws can show, never 0.
    assert statistics.paired_bootstrap(scoring.accuracy, labels, better, worse,
                                   500) == pytest.approx(1 / 501)


def test_bootstrap_of_the_average_over_tasks():
    rng = np.random.default_rng(1)
    labels = [rng.integers(0, 2, 300), rng.integers(0, 2, 200)]

    def right(k, rate):
        return [np.where(rng.random(len(labels[k])) < rate, labels[k],
                         1 - labels[k])]
    good = [right(0, 0.9), right(1, 0.9)]
    poor = [right(0, 0.6), right(1, 0.6)]
    part = lambda k, a, b: (scoring.accuracy, labels[k], a[k], b[k])  # noqa
    # Better on both tasks: no resampled average difference near 0.
    assert statistics.paired_bootstrap_average(
        [part(0, good, poor), part(1, good, poor)], 300) == \
        pytest.approx(1 / 301)
    # A's gain on task 0 is B's on a second task, a copy of it with the
    # models swapped: the observed average difference is 0, and every
    # resampled one (each task drawn on its own) is at least as far from
    # it, p = 1.
    assert statistics.paired_bootstrap_average(
        [part(0, good, poor), part(0, poor, good)], 300) == 1.0
    # One task: paired_bootstrap's test, draw for draw.
    assert statistics.paired_bootstrap_average([part(0, good, poor)], 300,
                                           seed=3) == \
        statistics.paired_bootstrap(scoring.accuracy, labels[0], good[0],
                                poor[0], 300, seed=3)


def test_mann_whitney_is_exact_with_ties_and_skips_single_trials():
    # Separated groups: 2 of the C(6, 3) = 20 relabelings are as extreme,
    # ties or not; scipy's default goes normal-approximate on ties, under.
    tied = ([56.0, 56.0, 55.6], [57.0, 57.0, 58.0])
    assert statistics.mann_whitney_p(*tied) == pytest.approx(2 / 20)
    assert stats.mannwhitneyu(*tied).pvalue < 0.1
    # Ties across groups, by hand: pooled midranks 1, 2.5, 2.5, 4; U of
    # the first group over its 6 relabelings is 0.5, 0.5, 2, 2, 3.5, 3.5;
    # observed 0.5: two-sided 2 * 2/6.
    assert statistics.mann_whitney_p([1, 2], [2, 3]) == pytest.approx(2 / 3)
    # No ties: scipy's exact test, 2 / C(8, 4).
    assert statistics.mann_whitney_p([1, 2, 3, 4], [5, 6, 7, 8]) == \
        pytest.approx(2 / 70)
    assert statistics.mann_whitney_p([1], [2, 3, 4]) is None
