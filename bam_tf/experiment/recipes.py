"""The paper's recipes as sequences of runs: teachers, their targets,
students, and a teacher-against-student table.

Model names derive from one prefix, so recipes that share a step share its
model folder (the single-task teachers of `single_to_multi` are the models of
`single`), and a recipe run again skips every step that finished.

Copies of one recipe command may run at once (on several GPUs or machines
sharing the BAM_DIR): each takes the trials no other live process holds,
and a student waits until the teacher trials it learns from are finished.
"""

import dataclasses
import time

import numpy as np
from absl import logging

from bam_tf.config import PRESETS
from bam_tf.config import ConfigError
from bam_tf.config import RunConfig
from bam_tf.distribute import get_strategy
from bam_tf.distribute import is_multi_worker
from bam_tf.experiment.run import train_and_evaluate
from bam_tf.io_utils import atomic_write_json
from bam_tf.io_utils import atomic_write_text
from bam_tf.runtime import Runtime
from bam_tf.store import identity as identity_lib
from bam_tf.store.bam_dir import comparison_base
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.opening import remove_model_dirs
from bam_tf.tasks import get_tasks
from bam_tf.tasks import scoring

RECIPES = ("single", "multi", "single_to_single", "single_to_multi",
           "multi_to_multi", "single_to_multi_to_single_to_multi")


def _name(prefix, *parts):
    return "-".join((prefix,) + parts)


def plan(recipe, prefix, task_names):
    """The runs of a recipe, in order: [(model_name, kind, tasks,
    teachers)], kind "single" or "multi" (which preset it uses)."""
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; one of {RECIPES}.")
    singles = [(_name(prefix, t, "single"), "single", [t], {})
               for t in task_names]
    multi = (_name(prefix, "multi"), "multi", list(task_names), {})
    s2m = (_name(prefix, "single-to-multi"), "multi", list(task_names),
           {t: _name(prefix, t, "single") for t in task_names})
    if recipe == "single":
        return singles
    if recipe == "multi":
        return [multi]
    if recipe == "single_to_single":
        return singles + [
            (_name(prefix, t, "single-to-single"), "single", [t],
             {t: _name(prefix, t, "single")}) for t in task_names]
    if recipe == "single_to_multi":
        return singles + [s2m]
    if recipe == "multi_to_multi":
        return [multi, (_name(prefix, "multi-to-multi"), "multi",
                        list(task_names),
                        {t: multi[0] for t in task_names})]
    # Paper 5: Single->Multi->Single->Multi (no significant gain).
    round2 = [(_name(prefix, t, "s2m-to-single"), "single", [t],
               {t: s2m[0]}) for t in task_names]
    return singles + [s2m] + round2 + [
        (_name(prefix, "s2m2s-to-multi"), "multi", list(task_names),
         {t: _name(prefix, t, "s2m-to-single") for t in task_names})]


def recipe_configs(recipe, prefix, task_names, values, debug=False,
                   runtime=None):
    """The validated configuration of every step of a recipe, teachers
    before their students; each checked against `runtime` too, where
    given.

    Args:
        recipe: one of `RECIPES`.
        prefix: model-name prefix.
        task_names: the tasks.
        values: configuration values set by the user (bam_dir, glue_dir,
            pretrained_model, num_trials, ...); they override the presets.
        debug: apply the debug preset (tiny encoder) over the paper's ones.
        runtime: the `Runtime` every step will run with.
    """
    runs = plan(recipe, prefix, task_names)
    weights = _task_loss_weights(values, runs, recipe)
    configs = []
    for name, kind, tasks, teachers in runs:
        preset = "single_task" if kind == "single" else "multi_task"
        config_values = {**PRESETS[preset],
                         **(PRESETS["debug"] if debug else {}),
                         **values, "model_name": name,
                         "task_names": tasks,
                         "distill": bool(teachers), "teachers": teachers,
                         "task_loss_weights": weights if kind == "multi"
                         else {}}
        configs.append(RunConfig.from_dict(config_values))
        if runtime is not None:
            runtime.validate(configs[-1])
    return configs


def trials_left(config, runtime, needed=()):
    """The trials of `config` this process is asked for (and `needed`, the
    trials its students learn from) that are not yet in its folder's
    results, whoever is running them."""
    asked = set(runtime.trial_numbers(config.num_trials)) | set(needed)
    folder = ModelDir.of(config)
    if not folder.exists():
        return asked
    saved = folder.read_saved_config()
    if saved is not None and identity_lib.experiment_differences(
            saved, config.section("experiment")):
        return asked
    return asked - folder.finished_trials()


def _needed_teacher_trials(configs):
    """{teacher model name: trials its students learn from}. A process
    asked for some trials (--trials) also takes these, so that a student
    never waits for a teacher trial no process will train."""
    needed = {}
    for config in configs:
        for _, teacher in config.teachers:
            needed.setdefault(teacher, set()).update(config.teacher_trials)
    return needed


def _teachers_ready(config):
    """Whether every teacher trial `config` learns from is finished."""
    for _, teacher in config.teachers:
        folder = ModelDir(config.bam_dir, teacher)
        if not set(config.teacher_trials) <= folder.finished_trials():
            return False
    return True


def run_recipe(recipe, prefix, task_names, values, debug=False,
               strategy=None, verbose=2, runtime=None, poll_secs=30.0,
               overwrite=False):
    """Runs every missing step of a recipe; returns the comparison table.

    Steps run in order. A step whose remaining trials are all held by
    other live processes is left to them, and this process goes on to
    the steps after it that do not learn from it; a student whose teacher
    trials are not finished waits for them (checking every `poll_secs`),
    and a teacher trial whose process died is taken over.

    Args: as `recipe_configs`, and the strategy, verbosity and `Runtime`
        of `train_and_evaluate`. `overwrite`: the recipe afresh: every
        model folder of the recipe is deleted before the first step
        (`bam_tf.store.opening.remove_model_dirs`: none if a live process
        holds a trial of one), so that no step, of this process or of
        another copy of the command, learns from what they held.

    Example:

    ```python
    table = run_recipe("single_to_multi", "bam", ["rte", "mrpc"],
                       {"bam_dir": bam_dir}, debug=True)
    print(format_table(table))
    ```
    """
    runtime = runtime or Runtime()
    # Every step is checked before the first trains, and before any
    # device is touched.
    configs = recipe_configs(recipe, prefix, task_names, values, debug,
                             runtime)
    strategy = strategy or get_strategy(runtime.strategy, runtime.tpu)
    if overwrite:
        if is_multi_worker(strategy):
            # Every worker reads the folders to choose its steps: one
            # could read them while the chief deletes them.
            raise ConfigError(
                "--overwrite with --strategy=multi_worker: delete the "
                "recipe's folders under BAM_DIR/models/ first, then start "
                "the command on every worker without --overwrite.")
        remove_model_dirs([ModelDir.of(c) for c in configs],
                          runtime.claim_timeout_secs)
    needed = _needed_teacher_trials(configs)
    pending = list(configs)
    trained = set()
    waited = False
    while pending:
        progressed = False
        for config in list(pending):
            extra = needed.get(config.model_name, set())
            left = trials_left(config, runtime, extra)
            if not left:
                logging.info("%s: finished%s.", config.model_name,
                             "" if waited or config.model_name in trained
                             else " earlier; skipped")
                pending.remove(config)
                progressed = True
                continue
            if not _teachers_ready(config):
                continue
            held = ModelDir.of(config).live_claims(
                runtime.claim_timeout_secs)
            if left <= set(held):
                continue  # other processes are on it
            logging.info("%s: training (%s).", config.model_name,
                         ",".join(config.task_names))
            asked = set(runtime.trial_numbers(config.num_trials))
            step_runtime = runtime if extra <= asked else (
                dataclasses.replace(runtime, trials=tuple(sorted(
                    asked | extra))))
            train_and_evaluate(config, strategy, verbose=verbose,
                               runtime=step_runtime)
            trained.add(config.model_name)
            progressed = True
        if pending and not progressed:
            if not waited:
                logging.info(
                    "waiting for other processes to finish %s (checking "
                    "every %.0f s).", [c.model_name for c in pending],
                    poll_secs)
            waited = True
            time.sleep(poll_secs)
    table = comparison_table(configs)
    base = comparison_base(values["bam_dir"], prefix, recipe)
    atomic_write_json(base + ".json", table)
    atomic_write_text(base + ".txt", format_table(table))
    return table


def _task_loss_weights(values, runs, recipe):
    """The user's task loss weights, for the multi-task steps only: they
    weigh tasks against each other, and one-task steps then stay the same
    runs (the same teacher folders) as without them."""
    weights = dict(values.get("task_loss_weights") or {})
    if not weights:
        return {}
    # Tasks outside --task_names are refused by the multi-task steps' own
    # configuration checks, which all run before the first step trains.
    if not any(kind == "multi" for _, kind, _, _ in runs):
        raise ConfigError(
            "--task_loss_weights weighs tasks against each other in a "
            f"multi-task model; recipe {recipe!r} trains none.")
    return weights


def _median_scores(config):
    trials = ModelDir.of(config).read_results()["trials"]
    scores = {}
    for task in config.task_names:
        scores[task] = float(np.median(
            [t["metrics"][task]["score"] for t in trials]))
    scores["avg"] = float(np.median([t["avg"] for t in trials]))
    return scores, len(trials)


def comparison_table(configs):
    """{"models": [{"name", "n_trials", "scores": {task: median score}}],
    "tasks": [...]}: every model of the recipe, teachers first."""
    tasks = []
    for config in configs:
        tasks += [t for t in config.task_names if t not in tasks]
    rows = []
    for config in configs:
        scores, n = _median_scores(config)
        rows.append({"name": config.model_name, "n_trials": n,
                     "scores": scores,
                     # Plain single-task models: the baseline row.
                     "single_task": len(config.task_names) == 1
                     and not config.distill})
    return {"tasks": tasks, "models": rows}


def format_table(table):
    """Medians over trials; single-task teachers fill one cell each, and a
    row "single-task teachers" gathers them for comparison.

    Example:
    >>> print(format_table({"tasks": ["rte"], "models": [
    ...     {"name": "bam-rte-single", "n_trials": 3, "single_task": True,
    ...      "scores": {"rte": 66.4, "avg": 66.4}}]}), end="")
    model                    trials      rte      avg
    bam-rte-single                3    66.40    66.40
    """
    columns = table["tasks"] + ["avg"]
    width = max([len(r["name"]) for r in table["models"]] + [24])
    lines = [f"{'model':<{width}} {'trials':>6} "
             + " ".join(f"{c:>8}" for c in columns)]
    singles = {}
    for row in table["models"]:
        cells = []
        for c in columns:
            value = row["scores"].get(c)
            cells.append(f"{value:8.2f}" if value is not None else " " * 8)
        lines.append(f"{row['name']:<{width}} {row['n_trials']:>6} "
                     + " ".join(cells))
        if row["single_task"]:
            [task] = [c for c in row["scores"] if c != "avg"]
            singles[task] = row["scores"][task]
    if len(singles) == len(table["tasks"]) and len(singles) > 1:
        # The same tasks as every model's average (not WNLI).
        avg = np.mean([singles[t.name] for t in scoring.averaged_tasks(
            get_tasks(table["tasks"]))])
        cells = [f"{singles[t]:8.2f}" for t in table["tasks"]]
        lines.append(f"{'single-task teachers':<{width}} {'':>6} "
                     + " ".join(cells + [f"{avg:8.2f}"]))
    return "\n".join(lines) + "\n"
