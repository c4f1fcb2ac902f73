"""Significance tests and summaries over trials (paper section 4:
medians over many runs; here also Mann-Whitney U over runs, paired
bootstrap tests over dev examples, and Holm-Bonferroni over a family).

Pure numpy and scipy: no TensorFlow, no files.
"""

import math

import numpy as np
from scipy import stats


def holm_bonferroni(p_values):
    """Holm's step-down adjusted p-values, in the input order.

    Example:
    >>> holm_bonferroni([0.01, 0.04, 0.03])
    array([0.03, 0.06, 0.06])
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (m - rank) * p[index])
        adjusted[index] = min(1.0, running)
    return adjusted


def stars(p):
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def summarize(values):
    """Median, mean, sample standard deviation (n - 1; None for a single
    trial, where it is undefined, not 0), min and max."""
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)),
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "min": float(np.min(values)), "max": float(np.max(values))}


# Relabelings of two trial lists that the Mann-Whitney test enumerates
# exactly (9 trials against 9: 48,620, 2.5 s on the 2-core development
# machine under load; 10 against 10, 184,756, took 12 s); past it,
# scipy's default, whose normal approximation is good at such sizes.
EXACT_RELABELINGS = 50_000


def mann_whitney_p(scores_a, scores_b):
    """Two-sided Mann-Whitney U p-value over two models' trial scores, or
    None when either has a single trial.

    Small samples get the exact distribution of U over all relabelings of
    the pooled scores, ties included. scipy's default switches to the
    normal approximation as soon as two scores tie (accuracies on a small
    dev set often do), and at 3 trials against 3 it then gives 0.047 to two
    separated groups of tied scores, where no relabeling test can go under
    0.1. Large samples keep scipy's default (tie- and continuity-corrected
    normal approximation). A single trial is no sample: against n others
    its p can never be under 2 / (n + 1), and it would only widen the
    Holm family of the tests that can reject.

    Example:
    >>> mann_whitney_p([56.0, 56.0, 55.6], [57.0, 57.0, 58.0])
    0.1
    """
    if min(len(scores_a), len(scores_b)) < 2:
        return None
    exact = math.comb(len(scores_a) + len(scores_b),
                      len(scores_a)) <= EXACT_RELABELINGS
    method = stats.PermutationMethod(n_resamples=np.inf) if exact else "auto"
    return float(stats.mannwhitneyu(scores_a, scores_b,
                                    alternative="two-sided",
                                    method=method).pvalue)


def paired_bootstrap(metric, labels, outputs_a, outputs_b, samples=1000,
                     seed=0):
    """Two-sided paired bootstrap test over examples.

    `outputs_a` / `outputs_b` are lists (one per trial) of per-example
    outputs; a model's statistic is its metric averaged over its trials.
    Examples are resampled with replacement, the same indices for both
    models; p counts the resampled differences at least as far from the
    observed difference as the observed difference is from 0, as
    (count + 1) / (samples + 1): a Monte Carlo p-value is never 0, and
    with `samples` draws none under 1 / (samples + 1) can be shown
    (Davison and Hinkley 1997, section 4.2).
    """
    return paired_bootstrap_average(
        [(metric, labels, outputs_a, outputs_b)], samples, seed)


def paired_bootstrap_average(parts, samples=1000, seed=0):
    """The paired bootstrap test of `paired_bootstrap` for the average
    over tasks, the paper's headline column.

    `parts` holds one (metric, labels, outputs_a, outputs_b) per task. A
    model's statistic is the mean over tasks of its metric averaged over
    trials (the average column's mean over trials, the two means
    commuting). Each resample draws every task's dev examples on their own
    (a stratified bootstrap: dev sets of different tasks are different
    samples), the same indices for both models. One part is
    `paired_bootstrap`'s test, draw for draw.
    """
    rng = np.random.default_rng(seed)

    def statistic(indices):
        return np.mean([
            np.mean([metric(labels[index], o[index]) for o in outputs_a])
            - np.mean([metric(labels[index], o[index]) for o in outputs_b])
            for (metric, labels, outputs_a, outputs_b), index
            in zip(parts, indices)])

    observed = statistic([np.arange(len(part[1])) for part in parts])
    deltas = np.empty(samples)
    for i in range(samples):
        deltas[i] = statistic([rng.integers(0, len(part[1]), len(part[1]))
                               for part in parts])
    extreme = np.sum(np.abs(deltas - observed) >= abs(observed) - 1e-12)
    return float((extreme + 1) / (samples + 1))
