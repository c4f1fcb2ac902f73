"""Dataset statistics for choosing max_seq_length and checking the task
mixture before training."""

import numpy as np

from bam_tf.data.examples import DataError
from bam_tf.data.features import Featurizer
from bam_tf.data.loading import load_split
from bam_tf.data.sampling import task_sampling_probabilities

PERCENTILES = (50, 90, 95, 99, 100)


def split_statistics(task, examples, featurizer=None):
    stats = {"examples": len(examples)}
    if examples.labels is not None:
        if task.is_regression:
            labels = examples.labels
            stats["labels"] = {"min": float(labels.min()),
                               "max": float(labels.max()),
                               "mean": float(labels.mean()),
                               "std": float(labels.std())}
        else:
            counts = np.bincount(examples.labels, minlength=task.num_labels)
            stats["labels"] = {name: int(c)
                               for name, c in zip(task.label_list, counts)}
    if featurizer is not None:
        lengths = featurizer.featurize(examples).full_lengths
        stats["length_percentiles"] = {
            f"p{p}": float(np.percentile(lengths, p)) for p in PERCENTILES}
        stats["truncated_share"] = float(
            np.mean(lengths > featurizer.max_seq_length))
    return stats


def data_statistics(tasks, glue_dir=None, data_source="tsv", tokenizer=None,
                    max_seq_length=128, exponent=0.75, double_unordered=True):
    """{"tasks": {task: {"splits": {split: {...}}, "sampling_probability":
    p}}, ...}; a split that cannot be read is reported with its error."""
    featurizer = (Featurizer(tokenizer, max_seq_length)
                  if tokenizer is not None else None)
    result = {"max_seq_length": max_seq_length,
              "task_weight_exponent": exponent, "tasks": {}}
    train_sizes = {}
    for task in tasks:
        splits = {}
        for split in task.splits:
            try:
                examples = load_split(task, split, glue_dir, data_source,
                                      double_unordered=double_unordered)
            except DataError as e:
                splits[split] = {"examples": 0, "error": str(e)}
                continue
            splits[split] = split_statistics(task, examples, featurizer)
        result["tasks"][task.name] = {"splits": splits}
        train_sizes[task.name] = splits["train"]["examples"]
    present = [t.name for t in tasks if train_sizes[t.name] > 0]
    probabilities = (task_sampling_probabilities(
        [train_sizes[n] for n in present], exponent) if present else [])
    for task in tasks:
        result["tasks"][task.name]["sampling_probability"] = 0.0
    for name, p in zip(present, probabilities):
        result["tasks"][name]["sampling_probability"] = float(p)
    return result


def format_statistics(stats):
    lines = [f"max_seq_length {stats['max_seq_length']}, sampling exponent "
             f"{stats['task_weight_exponent']}"]
    for name, task in stats["tasks"].items():
        lines.append(f"{name}: sampling probability "
                     f"{task['sampling_probability']:.4f}")
        for split, s in task["splits"].items():
            if "error" in s:
                lines.append(f"  {split}: unreadable: {s['error']}")
                continue
            line = f"  {split}: {s['examples']} examples"
            if "labels" in s:
                line += ", labels " + ", ".join(
                    f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in s["labels"].items())
            if "length_percentiles" in s:
                line += ", tokens " + " ".join(
                    f"{k} {v:.0f}" for k, v in s["length_percentiles"].items())
                line += f", truncated {100 * s['truncated_share']:.1f}%"
            lines.append(line)
    return "\n".join(lines) + "\n"
