"""GLUE metrics, computed on the host over a whole split (MCC and the
correlations do not decompose over batches)."""

import numpy as np
from scipy import stats


def accuracy(labels, predictions):
    return float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def f1(labels, predictions):
    """F1 of the positive class (1), as GLUE reports for MRPC and QQP."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    tp = np.sum((predictions == 1) & (labels == 1))
    fp = np.sum((predictions == 1) & (labels == 0))
    fn = np.sum((predictions == 0) & (labels == 1))
    return float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0


def mcc(labels, predictions):
    """Matthews correlation of binary labels (CoLA); 0 when undefined."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    tp = float(np.sum((predictions == 1) & (labels == 1)))
    tn = float(np.sum((predictions == 0) & (labels == 0)))
    fp = float(np.sum((predictions == 1) & (labels == 0)))
    fn = float(np.sum((predictions == 0) & (labels == 1)))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator else 0.0


def _correlation(fn, labels, predictions):
    labels = np.asarray(labels, np.float64)
    predictions = np.asarray(predictions, np.float64)
    if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0  # constant predictions (an untrained model): undefined
    return float(fn(labels, predictions)[0])


def pearson(labels, predictions):
    return _correlation(stats.pearsonr, labels, predictions)


def spearman(labels, predictions):
    return _correlation(stats.spearmanr, labels, predictions)


METRICS = {"accuracy": accuracy, "f1": f1, "mcc": mcc, "pearson": pearson,
           "spearman": spearman}


def score_split(task, labels, outputs):
    """Metrics of one split, in 0-100; `score` is the paper's metric (the
    task's first).

    Args:
        task: the `Task`.
        labels: gold label indices or raw regression values.
        outputs: logits [n, num_labels] for classification, predictions on
            the label scale [n] for regression.
    """
    outputs = np.asarray(outputs)
    predictions = outputs if task.is_regression else outputs.argmax(-1)
    results = {name: 100.0 * METRICS[name](labels, predictions)
               for name in task.metrics}
    results["score"] = results[task.metrics[0]]
    return results


def averaged_tasks(tasks):
    """The tasks the average counts: all but WNLI, as in the paper (a
    WNLI-only run still gets an average)."""
    counted = [t for t in tasks if t.in_glue_average]
    return counted or list(tasks)


def glue_average(task_scores, tasks):
    """The mean `score` over `averaged_tasks(tasks)`."""
    return float(np.mean([task_scores[t.name]["score"]
                          for t in averaged_tasks(tasks)]))
