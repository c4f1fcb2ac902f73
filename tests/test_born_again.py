"""End to end: single-task teachers, their targets, a Single->Multi student
with teacher annealing, GLUE files, and a recipe that resumes."""

import csv
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from bam_tf.config import ConfigError
from bam_tf.errors import RunError
from bam_tf.experiment import recipes
from bam_tf.runtime import Runtime
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.opening import open_model_dir
from bam_tf.store.outputs import read_predictions
from conftest import claim_of_a_live_process
from conftest import debug_config

TASKS = ["rte", "sts"]
FAST = {"max_seq_length": 32, "padding": "max_length",
        "debug_hidden_size": 32, "debug_vocab_size": 200,
        "num_train_epochs": 3.0, "learning_rate": 3e-3,
        "eval_each_epoch": False, "n_writes_test": 1}


@pytest.fixture(scope="module")
def recipe_run(tiny_glue, tmp_path_factory):
    bam_dir = str(tmp_path_factory.mktemp("bam"))
    values = {"bam_dir": bam_dir, "glue_dir": tiny_glue, **FAST}
    table = recipes.run_recipe("single_to_multi", "t", TASKS, values,
                               debug=True, verbose=0)
    return bam_dir, values, table


def _model_dir(bam_dir, name):
    return os.path.join(bam_dir, "models", name)


def test_plan_names_and_teachers():
    plan = recipes.plan("single_to_multi_to_single_to_multi", "p",
                        ["rte", "sts"])
    names = [p[0] for p in plan]
    assert names == ["p-rte-single", "p-sts-single", "p-single-to-multi",
                     "p-rte-s2m-to-single", "p-sts-s2m-to-single",
                     "p-s2m2s-to-multi"]
    assert plan[3][3] == {"rte": "p-single-to-multi"}
    assert recipes.plan("multi_to_multi", "p", ["rte", "sts"])[1][3] == {
        "rte": "p-multi", "sts": "p-multi"}


def _planned_configs(recipe, values):
    """The configurations `run_recipe` would train, without training."""
    return {c.model_name: c for c in recipes.recipe_configs(
        recipe, "p", ["rte", "sts"], values, debug=True)}


def test_task_loss_weights_go_to_multi_task_steps_only(tmp_path):
    values = {"bam_dir": str(tmp_path), "task_loss_weights": {"sts": 4}}
    configs = _planned_configs("single_to_multi", values)
    # Teachers stay the runs (and folders) they are without weights.
    assert configs["p-rte-single"].task_loss_weights == ()
    assert configs["p-sts-single"].task_loss_weights == ()
    assert configs["p-single-to-multi"].task_loss_weights == (("sts", 4.0),)
    with pytest.raises(ConfigError, match=r"tasks \['cola'\]"):
        _planned_configs("multi", {**values, "task_loss_weights": {"cola": 2}})
    with pytest.raises(ConfigError, match="trains none"):
        _planned_configs("single_to_single", values)


def test_teachers_write_targets_for_every_training_example(recipe_run,
                                                          tiny_glue):
    bam_dir, _, _ = recipe_run
    rte = read_predictions(os.path.join(
        _model_dir(bam_dir, "t-rte-single"), "outputs",
        "rte_train_predictions_1.npz"))
    assert rte["logits"].shape == (64, 2)
    assert sorted(rte["eid"].tolist()) == list(range(64))
    assert rte["label_list"].tolist() == ["entailment", "not_entailment"]
    sts = read_predictions(os.path.join(
        _model_dir(bam_dir, "t-sts-single"), "outputs",
        "sts_train_predictions_1.npz"))
    # STS-B pairs are doubled: both orders, ids 0..127.
    assert sorted(sts["eid"].tolist()) == list(range(128))
    assert np.all((sts["predictions"] >= 0) & (sts["predictions"] <= 5))


def test_student_config_and_results_follow_the_contract(recipe_run):
    bam_dir, _, table = recipe_run
    student = _model_dir(bam_dir, "t-single-to-multi")
    with open(os.path.join(student, "config.json")) as f:
        config = json.load(f)
    assert config["distill"] and config["teacher_annealing"]
    assert config["teachers"] == {"rte": "t-rte-single",
                                  "sts": "t-sts-single"}
    assert config["train_batch_size"] == 16  # the debug preset's, explicit
    with open(os.path.join(student, "results.json")) as f:
        results = json.load(f)
    [trial] = results["trials"]
    assert trial["seed"] == 1
    assert set(trial["metrics"]) == set(TASKS)
    assert set(trial["metrics"]["sts"]) == {"spearman", "pearson", "score"}
    assert trial["avg"] == pytest.approx(np.mean(
        [trial["metrics"][t]["score"] for t in TASKS]))
    assert "avg" in open(os.path.join(student, "results.txt")).read()
    names = [row["name"] for row in table["models"]]
    assert names == ["t-rte-single", "t-sts-single", "t-single-to-multi"]
    text = open(os.path.join(bam_dir, "comparisons",
                             "t_single_to_multi.txt")).read()
    assert "single-task teachers" in text


def test_glue_submission_files(recipe_run):
    """Each GLUE row is the test prediction of its example: the argmax
    label (RTE), the score on the label scale (STS-B), which the sigmoid
    head keeps in [0, 5] without clipping."""
    bam_dir, _, _ = recipe_run
    student = _model_dir(bam_dir, "t-single-to-multi")
    glue = os.path.join(student, "outputs", "glue", "1")
    assert sorted(os.listdir(glue)) == ["RTE.tsv", "STS-B.tsv"]
    rte = read_predictions(os.path.join(student, "outputs",
                                        "rte_test_predictions_1.npz"))
    with open(os.path.join(glue, "RTE.tsv")) as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["index", "prediction"]
    order = np.argsort(rte["eid"])
    labels = ("entailment", "not_entailment")
    assert rows[1:] == [[str(e), labels[int(np.argmax(l))]] for e, l in zip(
        rte["eid"][order], rte["logits"][order])]
    assert [int(r[0]) for r in rows[1:]] == list(range(10))
    sts = read_predictions(os.path.join(student, "outputs",
                                        "sts_test_predictions_1.npz"))
    order = np.argsort(sts["eid"])
    assert np.all((sts["predictions"] > 0) & (sts["predictions"] < 5))
    with open(os.path.join(glue, "STS-B.tsv")) as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[1:] == [[str(e), f"{p:.3f}"] for e, p in zip(
        sts["eid"][order], sts["predictions"][order])]


def test_teacher_annealing_in_tensorboard(recipe_run):
    """lambda = step / total steps, logged every 10 steps and at the last
    (the value the step used: its step count before the update)."""
    from tensorboard.backend.event_processing import event_accumulator
    bam_dir, _, _ = recipe_run
    student = _model_dir(bam_dir, "t-single-to-multi")
    with open(os.path.join(student, "results.json")) as f:
        total = json.load(f)["trials"][0]["steps"]
    acc = event_accumulator.EventAccumulator(
        os.path.join(student, "logs", "trial_1", "train"),
        size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()["tensors"]
    assert {"lambda", "loss_rte", "loss_sts",
            "learning_rate"} <= set(tags)
    events = acc.Tensors("lambda")
    steps = [e.step for e in events]
    assert steps == list(range(10, total, 10)) + [total]
    for event in events:
        assert float(tf.make_ndarray(event.tensor_proto)) == pytest.approx(
            (event.step - 1) / total, abs=1e-6), event.step


def test_trial_hparams_and_final_scores_for_the_dashboard(recipe_run):
    """Each finished trial is one HParams session: its settings as set,
    and its final dev scores equal to results.json's."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import metadata
    bam_dir, _, _ = recipe_run
    student = _model_dir(bam_dir, "t-single-to-multi")
    with open(os.path.join(student, "results.json")) as f:
        record = json.load(f)["trials"][0]
    with open(os.path.join(student, "config.json")) as f:
        config = json.load(f)
    acc = event_accumulator.EventAccumulator(
        os.path.join(student, "logs", "trial_1"),
        size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG])
    hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
               for k, v in start.hparams.items()}
    assert start.group_name == "t-single-to-multi/trial_1"
    assert hparams["learning_rate"] == pytest.approx(
        config["learning_rate"])
    assert hparams["distill"] is True and hparams["trial"] == 1
    assert hparams["teachers"] == json.dumps(config["teachers"],
                                             sort_keys=True)
    assert hparams["max_train_examples"] == config["max_train_examples"]
    final = {tag: acc.Tensors(tag) for tag in acc.Tags()["tensors"]
             if tag.startswith("final/")}
    assert sorted(final) == ["final/dev_avg", "final/dev_rte",
                             "final/dev_sts"]
    for tag, events in final.items():
        (event,) = events
        assert event.step == record["steps"]
        expected = (record["avg"] if tag == "final/dev_avg" else
                    record["metrics"][tag[len("final/dev_"):]]["score"])
        assert float(tf.make_ndarray(event.tensor_proto)) == pytest.approx(
            expected, rel=1e-6)


def test_second_run_skips_finished_steps(recipe_run, monkeypatch):
    bam_dir, values, _ = recipe_run

    def fail(*args, **kwargs):
        raise AssertionError("a finished step was trained again")
    monkeypatch.setattr(recipes, "train_and_evaluate", fail)
    table = recipes.run_recipe("single_to_multi", "t", TASKS, values,
                               debug=True, verbose=0)
    assert len(table["models"]) == 3


def test_trials_left_are_those_asked_for_not_in_the_results(tmp_path,
                                                           tiny_glue):
    config = debug_config(tmp_path, tiny_glue, "done", ["rte"], num_trials=3)
    folder = open_model_dir(config)
    left = lambda c, trials=None: recipes.trials_left(
        c, Runtime(trials=trials))
    assert left(config) == {1, 2, 3}  # no results yet
    record = lambda t: {"trial": t, "seed": t, "avg": 50.0,
                        "metrics": {"rte": {"score": 50.0}}}
    folder.merge_results([record(1), record(3)])
    assert left(config) == {2}
    assert left(config, (3,)) == set()
    # Fewer trials asked for (a recipe that interleaves seeds): finished.
    assert left(config.replace(num_trials=1)) == set()
    assert left(config.replace(num_trials=4)) == {2, 4}
    # Another experiment under the name: all of them (and the run then
    # says why it cannot add them).
    assert left(config.replace(learning_rate=1.0)) == {1, 2, 3}


def test_table_gathers_only_plain_single_task_models():
    row = lambda name, task, score, single: {
        "name": name, "n_trials": 3, "single_task": single,
        "scores": {task: score, "avg": score}}
    table = {"tasks": ["rte", "sts"], "models": [
        row("p-rte-single", "rte", 60.0, True),
        row("p-sts-single", "sts", 80.0, True),
        row("p-rte-s2m-to-single", "rte", 99.0, False),
        row("p-sts-s2m-to-single", "sts", 99.0, False)]}
    last = recipes.format_table(table).splitlines()[-1]
    assert last.split()[-3:] == ["60.00", "80.00", "70.00"]


def test_a_process_asked_for_some_trials_also_takes_the_teacher_trials(
        tmp_path, monkeypatch):
    """--trials=2 on a recipe whose student learns from teacher trial 1:
    the process trains teacher trial 1 too, rather than wait for a
    process that may never come."""
    calls = []

    def fake_train(config, strategy=None, verbose=0, runtime=None):
        trials = runtime.trial_numbers(config.num_trials)
        calls.append((config.model_name, trials))
        folder = open_model_dir(config, runtime=runtime)
        folder.merge_results([{"trial": t, "seed": t, "avg": 1.0, "metrics":
                               {n: {"score": 1.0} for n in config.task_names}}
                              for t in trials])
    monkeypatch.setattr(recipes, "train_and_evaluate", fake_train)
    values = {"bam_dir": str(tmp_path), "num_trials": 2}
    recipes.run_recipe("single_to_multi", "p", ["rte"], values, debug=True,
                       runtime=Runtime(trials=(2,)), poll_secs=0.01)
    assert calls == [("p-rte-single", [1, 2]), ("p-single-to-multi", [2])]


def test_overwrite_replaces_every_folder_of_the_recipe(tmp_path,
                                                      monkeypatch, caplog):
    """born_again.py --overwrite: every folder of the recipe deleted
    before the first step (none while a live process holds a trial of
    one), a student of another recipe named; and a first run says its
    steps finished, not "finished earlier"."""
    calls = []

    def fake_train(config, strategy=None, verbose=0, runtime=None):
        calls.append(config.model_name)
        folder = open_model_dir(config, runtime=runtime)
        # A student starts only once its teacher's folder holds the
        # trial this command trained (call number len(calls) - 1).
        for _, teacher in config.teachers:
            assert ModelDir(config.bam_dir, teacher).read_results()[
                "trials"][0]["avg"] == len(calls) - 1
        folder.merge_results([{"trial": 1, "seed": 1, "avg": len(calls),
                               "metrics": {n: {"score": 1.0}
                                           for n in config.task_names}}])
    monkeypatch.setattr(recipes, "train_and_evaluate", fake_train)
    values = {"bam_dir": str(tmp_path)}
    steps = ["o-rte-single", "o-single-to-multi"]
    run = lambda **kwargs: recipes.run_recipe(
        "single_to_multi", "o", ["rte"], values, debug=True,
        poll_secs=0.01, **kwargs)
    with caplog.at_level(logging.INFO, logger="absl"):
        run()
    assert calls == steps
    assert "earlier" not in caplog.text
    assert "o-rte-single: finished." in caplog.text
    # A student of another recipe, distilled from o-rte-single.
    outside = ModelDir(str(tmp_path), "o-rte-single-to-single")
    os.makedirs(outside.path)
    with open(outside.config_path, "w") as f:
        json.dump({"teachers": {"rte": "o-rte-single"}}, f)
    # A trial of the student held by a live process: nothing is deleted.
    student = ModelDir(str(tmp_path), steps[1])
    with claim_of_a_live_process(student.claim_path(1)) as live:
        with pytest.raises(RunError, match=f"{student.path} is in use: "
                           f"trial 1 is being run by host .*, pid "
                           f"{live.pid}"):
            run(overwrite=True)
    assert [ModelDir(str(tmp_path), n).finished_trials() for n in steps] \
        == [{1}, {1}] and calls == steps
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="absl"):
        run(overwrite=True)
    assert calls[2:] == steps
    # Replaced: each folder holds the second command's trial alone (a
    # folder kept would still hold calls 1 and 2).
    assert [ModelDir(str(tmp_path), name).read_results()["trials"]
            for name in steps] == [
        [{"trial": 1, "seed": 1, "avg": avg, "metrics": {"rte": {
            "score": 1.0}}}] for avg in (3, 4)]
    assert (f"{outside.path} learned from o-rte-single, which is replaced "
            "now") in caplog.text
    assert os.path.exists(outside.config_path)  # not this recipe's


def test_table_averages_the_teachers_as_the_models_average():
    row = lambda name, task, score: {
        "name": name, "n_trials": 1, "single_task": True,
        "scores": {task: score, "avg": score}}
    table = {"tasks": ["rte", "wnli", "sts"], "models": [
        row("p-rte-single", "rte", 60.0), row("p-wnli-single", "wnli", 10.0),
        row("p-sts-single", "sts", 80.0)]}
    last = recipes.format_table(table).splitlines()[-1]
    assert last.split()[-4:] == ["60.00", "10.00", "80.00", "70.00"]
