"""Multi-seed reports: medians and spreads over trials, and significance
tests between models (paper section 4: medians over many runs, bootstrap
tests over dev examples, Mann-Whitney U over runs, Holm-Bonferroni).
"""

import itertools
import os

import numpy as np

from bam_tf.analysis.statistics import holm_bonferroni
from bam_tf.analysis.statistics import mann_whitney_p
from bam_tf.analysis.statistics import paired_bootstrap
from bam_tf.analysis.statistics import paired_bootstrap_average
from bam_tf.analysis.statistics import stars
from bam_tf.analysis.statistics import summarize
from bam_tf.config import glue_dir
from bam_tf.data.loading import load_split
from bam_tf.errors import BamError
from bam_tf.store.bam_dir import model_names
from bam_tf.store.bam_dir import models_dir
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.outputs import read_predictions
from bam_tf.store.outputs import text_hashes
from bam_tf.tasks import get_task
from bam_tf.tasks import get_tasks
from bam_tf.tasks import scoring


class ReportError(BamError):
    pass


def _trials(bam_dir, name):
    """The folder's finished trials, each one's metrics in the order of
    the run's `task_names`: results.json is written with sorted keys,
    and the report's columns should follow the tasks as the user named
    them. A folder without config.json (results copied on their own)
    keeps the file's order."""
    folder = ModelDir(bam_dir, name)
    if not folder.exists():
        there = model_names(bam_dir)
        raise ReportError(
            f"{folder.path}: no such model folder; "
            + (f"the models under {models_dir(bam_dir)} are "
               f"{', '.join(there)}." if there
               else f"{models_dir(bam_dir)} holds no model."))
    if not os.path.exists(folder.results_path):
        raise ReportError(f"{folder.results_path}: no results file (no "
                          "trial of the model has finished).")
    trials = folder.read_results()["trials"]
    if not trials:
        raise ReportError(f"{folder.results_path}: no finished trials.")
    if os.path.exists(folder.config_path):
        order = list(folder.read_config().task_names)
        for trial in trials:
            trial["metrics"] = dict(sorted(
                trial["metrics"].items(),
                key=lambda item: (order.index(item[0]) if item[0] in order
                                  else len(order))))
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


SPLITS = ("dev", "train")


def _split_name(task, split):
    return task.dev_splits[0] if split == "dev" else split


def _predictions_file(bam_dir, folder, task, split, trial_number):
    return ModelDir(bam_dir, folder).predictions_path(
        task.name, _split_name(task, split), trial_number)


def _with_predictions(bam_dir, folder, task, split, trial_numbers):
    """The trials that have a predictions file on `split`, and those that
    have none (runs write them for their first n_writes_test /
    n_writes_distill trials only, and files can be lost).

    Returns:
        ([trial numbers with a file], [trial numbers without]).
    """
    found = {n: os.path.exists(_predictions_file(bam_dir, folder, task,
                                                 split, n))
             for n in trial_numbers}
    return ([n for n in trial_numbers if found[n]],
            [n for n in trial_numbers if not found[n]])


def _split_outputs(bam_dir, name, task, trial_numbers, split,
                   glue_dir_override=None):
    """Per-trial outputs on `split` ("dev": the task's first dev split;
    "train": the training set as the run read it, e.g. unordered pairs in
    both orders): logits for classification, predictions on the label
    scale for regression, rows sorted by example id, with the gold labels
    in the same order. Each trial must have its predictions file
    (`_with_predictions` says which do).

    `glue_dir_override`: the GLUE folder, where it is no longer where the
    run read it (a BAM_DIR moved to another machine).

    Returns:
        (labels, [outputs of each trial, in the order given]).
    """
    config = ModelDir(bam_dir, name).read_config()
    data_dir = glue_dir_override or glue_dir(config)
    split_name = _split_name(task, split)
    paths = [_predictions_file(bam_dir, name, task, split, number)
             for number in trial_numbers]
    if split == "train":
        examples = load_split(task, "train", data_dir, config.data_source,
                              double_unordered=config.double_unordered,
                              max_examples=config.max_train_examples)
    else:
        examples = load_split(task, split_name, data_dir, config.data_source)
    order = np.argsort(examples.eids, kind="stable")
    eids, hashes = examples.eids[order], text_hashes(examples)[order]
    outputs = []
    for path in paths:
        arrays = read_predictions(path)
        rows = np.argsort(arrays["eid"], kind="stable")
        # Ids say which row is which example, the text hashes that the
        # example is the one the model saw (not edited data since).
        if not (np.array_equal(arrays["eid"][rows], eids) and
                np.array_equal(arrays["text_hash"][rows], hashes)):
            raise ReportError(
                f"{path}: its examples are not the {split_name} set of "
                f"{name}'s configuration (other ids or texts).")
        values = (arrays["predictions"] if task.is_regression
                  else arrays["logits"])
        outputs.append(values[rows])
    return examples.labels[order], outputs


def _split_trials(bam_dir, label, trials, folders, split, glue_dir=None):
    """The finished trials rescored on `split` from their predictions
    files, each task from the folder that holds it. Runs write training-set
    predictions for their first `n_writes_distill` trials only: a trial
    without them in some folder is left out and named.

    Returns:
        (rescored trials, {folder: trial numbers without predictions}).
    """
    numbers = [trial["trial"] for trial in trials]
    missing = {}
    for task_name, folder in folders.items():
        _, absent = _with_predictions(bam_dir, folder, get_task(task_name),
                                      split, numbers)
        if absent:
            # Folders in the row's column order, as the dev report names
            # them.
            missing[folder] = sorted(set(missing.get(folder, [])) |
                                     set(absent))
    complete = [n for n in numbers
                if not any(n in absent for absent in missing.values())]
    rescored = []
    if complete:
        # One read of each task's split for all trials: training sets
        # (MNLI's 393k pairs) are not small.
        per_task = {name: _split_outputs(bam_dir, folder, get_task(name),
                                         complete, split, glue_dir)
                    for name, folder in folders.items()}
        for k, number in enumerate(complete):
            metrics = {name: scoring.score_split(get_task(name), labels,
                                                 outputs[k])
                       for name, (labels, outputs) in per_task.items()}
            rescored.append({"trial": number, "metrics": metrics,
                             "avg": scoring.glue_average(
                                 metrics, get_tasks(list(metrics)))})
    if not rescored:
        raise ReportError(
            f"{label}: no finished trial has {split} predictions in every "
            f"folder (missing: {missing}); runs write them for their first "
            "--n_writes_distill trials.")
    return rescored, missing


def _dev_predictions(bam_dir, folder, task, trial_numbers, glue_dir=None):
    """The task's dev predictions as the bootstrap scores them (classes
    from logits, regression values as they are).

    Returns:
        ((labels, [predictions of each trial that has a file]) or None
        when none has, [trial numbers without a file]).
    """
    present, missing = _with_predictions(bam_dir, folder, task, "dev",
                                         trial_numbers)
    if not present:
        return None, missing
    dev = _split_outputs(bam_dir, folder, task, present, "dev", glue_dir)
    if not task.is_regression:
        dev = dev[0], [o.argmax(-1) for o in dev[1]]
    return dev, missing


def _bootstrap_part(task, dev_a, dev_b):
    """(metric, labels, predictions of a's trials, of b's) from the two
    models' `_dev_predictions`; None when a side has none."""
    if dev_a is None or dev_b is None:
        return None
    return scoring.METRICS[task.metrics[0]], dev_a[0], dev_a[1], dev_b[1]


def _average_bootstrap(parts, model_a, model_b, samples, seed):
    """The bootstrap p of the average column, or None unless both models
    average the same tasks and every one of them has dev predictions."""
    averaged = [
        [t.name for t in scoring.averaged_tasks(
            get_tasks([c for c in model["scores"] if c != "avg"]))]
        for model in (model_a, model_b)]
    if set(averaged[0]) != set(averaged[1]) or \
            any(parts.get(t) is None for t in averaged[0]):
        return None
    # The tasks' examples are drawn in turn from one generator: taken by
    # name, the draws (and so p) do not depend on the order of the
    # columns, or on which of the two models comes first.
    return paired_bootstrap_average([parts[t] for t in sorted(averaged[0])],
                                    samples, seed)


def build_report(bam_dir, model_names, bootstrap_samples=1000, seed=0,
                 split="dev", glue_dir=None, pairs=None):
    """The report as a dict (see scripts/report.py for its layout).

    `model_names` are model folders, or "LABEL=a+b+..." rows joining
    several folders (`parse_model_spec`).

    `pairs` ([(label_a, label_b), ...]) tests only those pairs of rows,
    in that order, each as its columns a and b; None tests every pair.
    Holm's correction is over the tests a report runs, so naming in
    advance the pairs a question is about (the paper's Table 4: each
    ablation against the model it ablates) keeps the family to them.

    The bootstrap tests each model over the trials that wrote dev
    predictions; the others are named under `no_dev_predictions`
    ({folder: trial numbers}).

    `split="train"` scores the finished trials on their training sets, from
    the predictions runs write there for their first `n_writes_distill`
    trials (the distillation targets; other trials are named under
    `no_predictions`, {folder: trial numbers}): how
    well each model fits what it trained on, next to its dev scores, tells
    under-fitting from over-fitting. Only the Mann-Whitney U test runs
    then: the bootstrap asks whether a difference would hold on other
    examples of the task, which is the dev set's question, not the
    training set's.

    `glue_dir` reads the GLUE files from there instead of where each run
    read them (its config.json): for folders moved to another machine.

    Example:

    ```python
    report = build_report(bam_dir, ["multi=bam-multi", "bam-single-to-multi"],
                          pairs=[("multi", "bam-single-to-multi")])
    report["models"]["multi"]["median"]["avg"]  # the median GLUE average
    ```
    """
    if split not in SPLITS:
        raise ReportError(f"split {split!r}: expected one of {SPLITS}.")
    specs = [parse_model_spec(spec) for spec in model_names]
    labels = [label for label, _ in specs]
    for label in labels:
        if labels.count(label) > 1:
            raise ReportError(f"{label!r} is named twice.")
    # Before any folder is read: a misnamed pair should not wait for
    # every training set to be scored.
    pairs = _check_pairs(pairs, labels)
    trials, folders, left_out, no_predictions = {}, {}, {}, {}
    for label, members in specs:
        if len(members) == 1 and label == members[0]:
            trials[label] = _trials(bam_dir, label)
            folders[label] = {t: label for t in trials[label][0]["metrics"]}
        else:
            trials[label], folders[label], left_out[label] = _group_trials(
                bam_dir, members)
        if split != "dev":
            trials[label], no_predictions[label] = _split_trials(
                bam_dir, label, trials[label], folders[label], split,
                glue_dir)
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
        if no_predictions.get(name):
            models[name]["no_predictions"] = no_predictions[name]
        for key in ("median", "mean", "std", "min", "max"):
            models[name][key] = {c: s[key] for c, s in summaries.items()}

    dev_predictions = {}

    def dev_of(name, column):
        # A model is in several pairs: its dev split and predictions are
        # read and converted once.
        if (name, column) not in dev_predictions:
            folder = folders[name][column]
            dev_predictions[name, column], missing = _dev_predictions(
                bam_dir, folder, get_task(column),
                [t["trial"] for t in trials[name]], glue_dir)
            if missing:
                # Runs write dev predictions for their first n_writes_test
                # trials, and files can be lost: the bootstrap then tests
                # fewer trials than the medians summarise, which is said.
                named = models[name].setdefault("no_dev_predictions", {})
                named[folder] = sorted(set(named.get(folder, [])) |
                                       set(missing))
        return dev_predictions[name, column]

    comparisons = []
    for a, b in pairs:
        parts = {}  # task -> the bootstrap's inputs, for the average's
        for column in tasks + ["avg"]:
            if column not in models[a]["scores"] or \
                    column not in models[b]["scores"]:
                continue
            p = mann_whitney_p(models[a]["scores"][column],
                               models[b]["scores"][column])
            if p is not None:
                comparisons.append({"a": a, "b": b, "task": column,
                                    "test": "mann_whitney_u", "p": p})
            if split != "dev":
                continue
            if column == "avg":
                p = _average_bootstrap(parts, models[a], models[b],
                                       bootstrap_samples, seed)
            else:
                part = parts[column] = _bootstrap_part(
                    get_task(column), dev_of(a, column), dev_of(b, column))
                p = None if part is None else paired_bootstrap(
                    *part, bootstrap_samples, seed)
            if p is not None:
                comparisons.append({"a": a, "b": b, "task": column,
                                    "test": "bootstrap", "p": p})
    adjusted = holm_bonferroni([c["p"] for c in comparisons]) \
        if comparisons else []
    for comparison, p_holm in zip(comparisons, adjusted):
        comparison["p_holm"] = float(p_holm)
        comparison["stars"] = stars(p_holm)
    return {"split": split, "tasks": tasks, "models": models,
            "pairs": [list(pair) for pair in pairs],
            "comparisons": comparisons}


def parse_pair(spec):
    """"A:B" -> ("A", "B"), as `--comparisons` names a pair of rows (a
    label holding ":" cannot be named this way)."""
    a, sep, b = (part.strip() for part in spec.partition(":"))
    if not sep or not a or not b or ":" in b:
        raise ReportError(f"comparison {spec!r}: expected two row labels "
                          "as A:B (labels without ':').")
    return a, b


def _check_pairs(pairs, labels):
    if pairs is None:
        return list(itertools.combinations(labels, 2))
    if not pairs:
        raise ReportError("no comparisons named: name pairs as A:B, or "
                          "leave --comparisons out to test every pair.")
    named = {}  # {the pair, either way round: how it was first named}
    for a, b in pairs:
        for label in (a, b):
            if label not in labels:
                raise ReportError(
                    f"comparison {a}:{b}: no row {label!r} (rows: "
                    f"{', '.join(labels)}).")
        if a == b:
            raise ReportError(f"comparison {a}:{b}: a row against itself.")
        key = frozenset((a, b))
        if key in named:
            raise ReportError(f"comparison {a}:{b} repeats {named[key]}.")
        named[key] = f"{a}:{b}"
    return [tuple(pair) for pair in pairs]


def format_markdown(report):
    """A Table 1-style table of medians, then the comparisons, in
    Markdown.

    Example:

    ```python
    print(format_markdown(build_report(bam_dir, ["bam-multi", "bam-s2m"])))
    ```
    """
    columns = report["tasks"] + ["avg"]
    lines = ["| model | trials | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for name, model in report["models"].items():
        cells = []
        for c in columns:
            if c in model["median"]:
                std = model["std"][c]
                cells.append(f"{model['median'][c]:.1f}" + (
                    "" if std is None else f" (±{std:.1f})"))
            else:
                cells.append("")
        lines.append(f"| {name} | {model['n_trials']} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Medians over trials (± standard deviation, none for "
              "one trial)" + (
        "." if report.get("split", "dev") == "dev" else
        f", scored on the {report['split']} set from each trial's "
        "predictions there."), ""]
    for name, model in report["models"].items():
        for folder, numbers in model.get("left_out", {}).items():
            lines.append(
                f"{name}: trial{'s' if len(numbers) > 1 else ''} "
                f"{', '.join(map(str, numbers))} of {folder} left out (not "
                "finished in every folder of the row).")
        for folder, numbers in model.get("no_predictions", {}).items():
            lines.append(
                f"{name}: trial{'s' if len(numbers) > 1 else ''} "
                f"{', '.join(map(str, numbers))} of {folder} left out (no "
                f"{report['split']} predictions file).")
        for folder, numbers in model.get("no_dev_predictions", {}).items():
            lines.append(
                f"{name}: trial{'s' if len(numbers) > 1 else ''} "
                f"{', '.join(map(str, numbers))} of {folder} without dev "
                "predictions (bootstrap tests over its other trials; none "
                "where no trial has them).")
    if any(key in m for m in report["models"].values()
           for key in ("left_out", "no_predictions", "no_dev_predictions")):
        lines.append("")
    # The pairs are distinct (_check_pairs): as many as every pair's
    # count means every pair, whichever way round each was named.
    if len(report["pairs"]) < len(_check_pairs(None, list(report["models"]))):
        lines += ["Tests only between " + "; ".join(
            f"{a} and {b}" for a, b in report["pairs"]) + ".", ""]
    if report["comparisons"]:
        lines += ["| a | b | task | test | p | p (Holm) | |",
                  "|---|---|---|---|---|---|---|"]
        for c in report["comparisons"]:
            lines.append(f"| {c['a']} | {c['b']} | {c['task']} | {c['test']} "
                         f"| {c['p']:.4f} | {c['p_holm']:.4f} | "
                         f"{c['stars']} |")
        lines += ["", "Two-sided tests; Holm-Bonferroni over every test "
                  "above; * p < .05, ** p < .01, *** p < .001. Mann-Whitney U "
                  "only between models with 2 trials or more."]
    return "\n".join(lines) + "\n"
