"""Multi-seed reports: medians and spreads over trials, and significance
tests between models (paper section 4: medians over many runs, bootstrap
tests over dev examples, Mann-Whitney U over runs, Holm-Bonferroni).
"""

import itertools
import json
import os

import numpy as np
from scipy import stats

from bam_tf import scoring
from bam_tf.config import RunConfig
from bam_tf.config import glue_dir
from bam_tf.data.loading import load_split
from bam_tf.outputs import predictions_path
from bam_tf.outputs import read_predictions
from bam_tf.tasks import get_task
from bam_tf.tasks import get_tasks


class ReportError(ValueError):
    pass


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
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)),
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "min": float(np.min(values)), "max": float(np.max(values))}


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
    rng = np.random.default_rng(seed)
    n = len(labels)

    def statistic(outputs, index):
        return np.mean([metric(labels[index], o[index]) for o in outputs])

    everything = np.arange(n)
    observed = statistic(outputs_a, everything) - statistic(
        outputs_b, everything)
    deltas = np.empty(samples)
    for i in range(samples):
        index = rng.integers(0, n, n)
        deltas[i] = statistic(outputs_a, index) - statistic(outputs_b, index)
    extreme = np.sum(np.abs(deltas - observed) >= abs(observed) - 1e-12)
    return float((extreme + 1) / (samples + 1))


def _trials(bam_dir, name):
    path = os.path.join(bam_dir, "models", name, "results.json")
    try:
        with open(path, encoding="utf-8") as f:
            trials = json.load(f)["trials"]
    except (OSError, ValueError, KeyError) as e:
        raise ReportError(f"{path}: cannot read results ({e}).") from None
    if not trials:
        raise ReportError(f"{path}: no finished trials.")
    return trials


def parse_model_spec(spec):
    """"name" -> ("name", ["name"]); "label=a+b+c" -> ("label", [a, b, c]):
    a row made of several model folders, e.g. one single-task model per
    task as the paper's "Single" row."""
    label, sep, members = spec.partition("=")
    if not sep:
        return spec, [spec]
    members = [m for m in members.split("+") if m]
    if not label or not members:
        raise ReportError(f"{spec!r}: expected NAME or LABEL=MODEL+MODEL+...")
    return label, members


def _group_trials(bam_dir, members):
    """Trials of several folders joined by trial number (those all of them
    finished): each task's score from the folder that holds it, the
    average over all of them recomputed (WNLI excluded, as for one model).
    Returns (trials, {task: folder}, {folder: trial numbers left out})."""
    per_member = [(_trials(bam_dir, m), m) for m in members]
    owner = {}
    for trials, member in per_member:
        for task in trials[0]["metrics"]:
            if task in owner:
                raise ReportError(f"Task {task!r} is in both {owner[task]} "
                                  f"and {member}.")
            owner[task] = member
    common = set.intersection(*({t["trial"] for t in trials}
                                for trials, _ in per_member))
    if not common:
        raise ReportError(f"{'+'.join(members)}: no trial number that all "
                          "of them finished.")
    merged = []
    for number in sorted(common):
        metrics = {}
        for trials, _ in per_member:
            metrics.update(next(t for t in trials
                                if t["trial"] == number)["metrics"])
        merged.append({"trial": number, "metrics": metrics,
                       "avg": scoring.glue_average(
                           metrics, get_tasks(list(metrics)))})
    left_out = {member: sorted({t["trial"] for t in trials} - common)
                for trials, member in per_member}
    return merged, owner, {m: v for m, v in left_out.items() if v}


def _dev_outputs(bam_dir, name, task, trials):
    """Per-trial dev predictions (class ids or regression values), sorted by
    example id, with the gold labels; None where no trial wrote them."""
    model_dir = os.path.join(bam_dir, "models", name)
    config = RunConfig.from_json(os.path.join(model_dir, "config.json"))
    split = task.dev_splits[0]
    outputs = []
    for trial in trials:
        path = predictions_path(model_dir, task.name, split, trial["trial"])
        if not os.path.exists(path):
            continue
        arrays = read_predictions(path)
        order = np.argsort(arrays["eid"])
        values = (arrays["predictions"] if task.is_regression
                  else arrays["logits"].argmax(-1))
        outputs.append((arrays["eid"][order], values[order]))
    if not outputs:
        return None
    examples = load_split(task, split, glue_dir(config), config.data_source)
    labels = examples.labels[np.argsort(examples.eids)]
    eids = np.sort(examples.eids)
    for trial_eids, _ in outputs:
        if not np.array_equal(trial_eids, eids):
            raise ReportError(
                f"{name}: {task.name} {split} predictions do not cover the "
                "dev set of its configuration.")
    return labels, [v for _, v in outputs]


def build_report(bam_dir, model_names, bootstrap_samples=1000, seed=0):
    """The report as a dict (see scripts/report.py for its layout).

    `model_names` are model folders, or "LABEL=a+b+..." rows joining
    several folders (`parse_model_spec`)."""
    trials, folders, left_out = {}, {}, {}
    for spec in model_names:
        label, members = parse_model_spec(spec)
        if label in trials:
            raise ReportError(f"{label!r} is named twice.")
        if len(members) == 1 and label == members[0]:
            trials[label] = _trials(bam_dir, label)
            folders[label] = {t: label for t in trials[label][0]["metrics"]}
        else:
            trials[label], folders[label], left_out[label] = _group_trials(
                bam_dir, members)
    model_names = list(trials)
    models = {}
    tasks = []
    for name in model_names:
        model_tasks = list(trials[name][0]["metrics"])
        tasks += [t for t in model_tasks if t not in tasks]
        columns = {t: [tr["metrics"][t]["score"] for tr in trials[name]]
                   for t in model_tasks}
        columns["avg"] = [tr["avg"] for tr in trials[name]]
        summaries = {column: summarize(v) for column, v in columns.items()}
        models[name] = {"n_trials": len(trials[name]),
                        "scores": columns}
        if left_out.get(name):
            # A row joining folders counts only the trials all of them
            # finished; the others are named, not dropped silently.
            models[name]["left_out"] = left_out[name]
        for key in ("median", "mean", "std", "min", "max"):
            models[name][key] = {c: s[key] for c, s in summaries.items()}

    comparisons = []
    for a, b in itertools.combinations(model_names, 2):
        for column in tasks + ["avg"]:
            if column not in models[a]["scores"] or \
                    column not in models[b]["scores"]:
                continue
            xa, xb = models[a]["scores"][column], models[b]["scores"][column]
            p = float(stats.mannwhitneyu(xa, xb,
                                         alternative="two-sided").pvalue)
            comparisons.append({"a": a, "b": b, "task": column,
                                "test": "mann_whitney_u", "p": p})
            if column == "avg":
                continue
            task = get_task(column)
            dev_a = _dev_outputs(bam_dir, folders[a][column], task, trials[a])
            dev_b = _dev_outputs(bam_dir, folders[b][column], task, trials[b])
            if dev_a is None or dev_b is None:
                continue
            metric = scoring.METRICS[task.metrics[0]]
            p = paired_bootstrap(metric, dev_a[0], dev_a[1], dev_b[1],
                                 bootstrap_samples, seed)
            comparisons.append({"a": a, "b": b, "task": column,
                                "test": "bootstrap", "p": p})
    adjusted = holm_bonferroni([c["p"] for c in comparisons]) \
        if comparisons else []
    for comparison, p_holm in zip(comparisons, adjusted):
        comparison["p_holm"] = float(p_holm)
        comparison["stars"] = stars(p_holm)
    return {"tasks": tasks, "models": models, "comparisons": comparisons}


def format_markdown(report):
    """A Table 1-style table of medians, then the comparisons."""
    columns = report["tasks"] + ["avg"]
    lines = ["| model | trials | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for name, model in report["models"].items():
        cells = []
        for c in columns:
            if c in model["median"]:
                cells.append(f"{model['median'][c]:.1f} "
                             f"(±{model['std'][c]:.1f})")
            else:
                cells.append("")
        lines.append(f"| {name} | {model['n_trials']} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Medians over trials (± standard deviation).", ""]
    for name, model in report["models"].items():
        for folder, numbers in model.get("left_out", {}).items():
            lines.append(
                f"{name}: trial{'s' if len(numbers) > 1 else ''} "
                f"{', '.join(map(str, numbers))} of {folder} left out (not "
                "finished in every folder of the row).")
    if any("left_out" in m for m in report["models"].values()):
        lines.append("")
    if report["comparisons"]:
        lines += ["| a | b | task | test | p | p (Holm) | |",
                  "|---|---|---|---|---|---|---|"]
        for c in report["comparisons"]:
            lines.append(f"| {c['a']} | {c['b']} | {c['task']} | {c['test']} "
                         f"| {c['p']:.4f} | {c['p_holm']:.4f} | "
                         f"{c['stars']} |")
        lines += ["", "Two-sided tests; Holm-Bonferroni over all rows; "
                  "* p < .05, ** p < .01, *** p < .001."]
    return "\n".join(lines) + "\n"
