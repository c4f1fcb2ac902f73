import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from bam_tf.analysis import report
from bam_tf.analysis import statistics
from bam_tf.data.loading import load_split
from bam_tf.io_utils import atomic_write_json
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.outputs import read_predictions
from bam_tf.store.outputs import write_predictions
from bam_tf.tasks import get_task
from bam_tf.tasks import scoring

from conftest import REPO
from conftest import SHARED_GLUE
from conftest import debug_config


def _fake_model(bam_dir, glue_dir, name, scores, accuracy, seed,
                task_names=("rte",)):
    """A model folder with trials' results (`scores`, the same for every
    task) and dev predictions of a given accuracy on each classification
    task of `task_names`, the order its run named them in. Predictions are
    drawn task by task in name order: the same whatever that order."""
    config = debug_config(bam_dir, glue_dir, name, list(task_names))
    folder = os.path.join(bam_dir, "models", name)
    atomic_write_json(os.path.join(folder, "config.json"), config.to_dict())
    dev = {t: load_split(get_task(t), "dev", glue_dir)
           for t in sorted(task_names)}
    rng = np.random.default_rng(seed)
    trials = []
    for trial, score in enumerate(scores, start=1):
        for task_name, examples in dev.items():
            right = rng.random(len(examples)) < accuracy
            predicted = np.where(right, examples.labels, 1 - examples.labels)
            logits = np.eye(2, dtype=np.float32)[predicted]
            write_predictions(
                _predictions_path(folder, task_name, "dev", trial),
                get_task(task_name), examples, examples.eids, logits)
        trials.append({"trial": trial, "seed": trial, "avg": score,
                       "metrics": {t: {"accuracy": score, "score": score}
                                   for t in task_names}})
    atomic_write_json(os.path.join(folder, "results.json"),
                      {"trials": trials})


def test_report_script(tiny_glue, tmp_path):
    _fake_model(tmp_path, tiny_glue, "strong", [80, 82, 81, 83, 84], 0.95, 1)
    _fake_model(tmp_path, tiny_glue, "weak", [60, 61, 59, 62, 58], 0.3, 2)
    out, md = tmp_path / "report.json", tmp_path / "report.md"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "report.py"),
         f"--bam_dir={tmp_path}", "--model_names=strong,weak",
         f"--output_json={out}", f"--markdown={md}",
         "--bootstrap_samples=300"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    strong = data["models"]["strong"]
    assert strong["n_trials"] == 5
    assert strong["median"] == {"rte": 82.0, "avg": 82.0}
    assert strong["std"]["rte"] == pytest.approx(stats.tstd([80, 82, 81,
                                                             83, 84]))
    tests = {(c["task"], c["test"]): c for c in data["comparisons"]}
    mwu = stats.mannwhitneyu([80, 82, 81, 83, 84], [60, 61, 59, 62, 58],
                             alternative="two-sided").pvalue
    assert tests[("rte", "mann_whitney_u")]["p"] == pytest.approx(mwu)
    assert tests[("avg", "mann_whitney_u")]["p"] == pytest.approx(mwu)
    assert tests[("rte", "bootstrap")]["p"] < 0.01
    # One task: its average is its score, the same test on the same draws.
    assert tests[("avg", "bootstrap")]["p"] == tests[("rte", "bootstrap")]["p"]
    ps = [c["p"] for c in data["comparisons"]]
    np.testing.assert_allclose([c["p_holm"] for c in data["comparisons"]],
                               statistics.holm_bonferroni(ps))
    assert "| strong | 5 | 82.0" in md.read_text()


def test_report_skips_comparisons_with_a_single_trial(tiny_glue, tmp_path):
    # A single trial is no sample (statistics.mann_whitney_p gives None).
    _fake_results(tmp_path, tiny_glue, "once", {"rte": [60]})
    _fake_results(tmp_path, tiny_glue, "thrice", {"rte": [70, 71, 72]})
    data = report.build_report(str(tmp_path), ["once", "thrice"])
    assert data["comparisons"] == []
    assert data["models"]["once"]["n_trials"] == 1
    # A misspelled name lists the models there are; a model with no
    # finished trial says so.
    with pytest.raises(report.ReportError, match=(
            f"{tmp_path}/models/thrize: no such model folder; the models "
            f"under {tmp_path}/models are once, thrice.")):
        report.build_report(str(tmp_path), ["once", "thrize"])
    os.makedirs(os.path.join(tmp_path, "models", "started"))
    with pytest.raises(report.ReportError, match=(
            r"started/results.json: no results file \(no trial of the "
            r"model has finished\)")):
        report.build_report(str(tmp_path), ["started"])


def test_named_comparisons_test_only_those_pairs(tiny_glue, tmp_path):
    """Holm's family is the named pairs' tests: b and c are separated
    (Mann-Whitney p = 2 / C(10, 5) for rte and for the average), and with
    two pairs named, four tests, b:c's Holm p is 4 times that, where
    every pair's six tests (a:b separated too) make it 6 times."""
    for name, low in (("a", 60), ("b", 50), ("c", 61)):
        _fake_results(tmp_path, tiny_glue, name,
                      {"rte": list(range(low, low + 10, 2))})
    floor = 2 / 252
    full = report.build_report(str(tmp_path), ["a", "b", "c"])
    assert full["pairs"] == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert len(full["comparisons"]) == 6
    named = report.build_report(str(tmp_path), ["a", "b", "c"],
                                pairs=[("c", "a"), ("b", "c")])
    assert named["pairs"] == [["c", "a"], ["b", "c"]]
    rows = {(c["a"], c["b"], c["task"]): c for c in named["comparisons"]}
    # In the order named, each pair the way round it was named.
    assert list(rows) == [("c", "a", "rte"), ("c", "a", "avg"),
                          ("b", "c", "rte"), ("b", "c", "avg")]
    assert rows["b", "c", "rte"]["p"] == pytest.approx(floor)
    assert rows["b", "c", "rte"]["p_holm"] == pytest.approx(4 * floor)
    assert rows["b", "c", "rte"]["stars"] == "*"
    # c is a shifted by one: interleaved, p from scipy's exact test.
    exact = stats.mannwhitneyu([61, 63, 65, 67, 69], [60, 62, 64, 66, 68],
                               method="exact").pvalue
    assert rows["c", "a", "rte"]["p"] == pytest.approx(exact)
    in_full = {(c["a"], c["b"], c["task"]): c for c in full["comparisons"]}
    assert in_full["b", "c", "rte"]["p_holm"] == pytest.approx(6 * floor)
    text = report.format_markdown(named)
    assert "Tests only between c and a; b and c." in text
    assert "Tests only" not in report.format_markdown(full)
    for pairs, message in (
            ([("a", "zz")], r"comparison a:zz: no row 'zz' \(rows: a, b, c\)"),
            ([("a", "a")], "a row against itself"),
            ([("a", "b"), ("b", "a")], "comparison b:a repeats a:b"),
            ([], "no comparisons named")):
        with pytest.raises(report.ReportError, match=message):
            report.build_report(str(tmp_path), ["a", "b", "c"], pairs=pairs)
    # Named pairs are checked before any folder is read.
    with pytest.raises(report.ReportError, match="no row 'zz'"):
        report.build_report(str(tmp_path), ["a", "nowhere"],
                            pairs=[("a", "zz")])
    assert report.parse_pair("Single->Multi : lambda-0") == (
        "Single->Multi", "lambda-0")


def test_report_script_refuses_a_bad_comparison_and_keeps_its_files(
        tiny_glue, tmp_path):
    _fake_results(tmp_path, tiny_glue, "a", {"rte": [60, 62, 64]})
    _fake_results(tmp_path, tiny_glue, "b", {"rte": [50, 52, 54]})
    md = tmp_path / "report.md"
    argv = [sys.executable, os.path.join(REPO, "scripts", "report.py"),
            f"--bam_dir={tmp_path}", "--model_names=a,b", f"--markdown={md}"]
    ok = subprocess.run(argv + ["--comparisons=b:a"], capture_output=True,
                        text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-3000:]
    written = md.read_text()
    assert "Tests only" not in written  # b:a is every pair there is
    assert "| b | a | rte | mann_whitney_u | 0.1000 |" in written
    for flag, message in (("--comparisons=a-b",
                           "comparison 'a-b': expected two row labels as A:B"),
                          ("--comparisons=a:c",
                           "comparison a:c: no row 'c' (rows: a, b)"),
                          ("--comparisons=", "no comparisons named")):
        result = subprocess.run(argv + [flag], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 1
        assert f"error: {message}" in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        assert md.read_text() == written


def _fake_results(bam_dir, glue_dir, name, scores):
    """A model folder with results only: scores = {task: [per trial]}."""
    config = debug_config(bam_dir, glue_dir, name, list(scores))
    folder = os.path.join(bam_dir, "models", name)
    atomic_write_json(os.path.join(folder, "config.json"), config.to_dict())
    n = len(next(iter(scores.values())))
    trials = [{"trial": k + 1, "seed": k + 1,
               "avg": float(np.mean([v[k] for v in scores.values()])),
               "metrics": {t: {"score": v[k]} for t, v in scores.items()}}
              for k in range(n)]
    atomic_write_json(os.path.join(folder, "results.json"),
                      {"trials": trials})


def test_report_script_draws_the_figure_and_names_what_it_wrote(
        tiny_glue, tmp_path):
    _fake_results(tmp_path, tiny_glue, "a", {"rte": [60, 62, 64]})
    _fake_results(tmp_path, tiny_glue, "b", {"rte": [50, 52, 54]})
    paper, figure = tmp_path / "paper.json", tmp_path / "scores.png"
    paper.write_text(json.dumps({"_source": "t", "a": {"rte": 70.4}}))
    argv = [sys.executable, os.path.join(REPO, "scripts", "report.py"),
            f"--bam_dir={tmp_path}", "--model_names=a,b",
            f"--figure={figure}", f"--paper_scores={paper}"]
    result = subprocess.run(argv, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.rstrip().endswith(f"wrote {figure}")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A damaged paper file: an error naming it and the line, nothing
    # written over the figure already there.
    before = figure.read_bytes()
    paper.write_text('{"a": {"rte": 70.4},\n "b": }')
    result = subprocess.run(argv, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert f"error: {paper} is not valid JSON" in result.stderr
    assert "line 2" in result.stderr and "Traceback" not in result.stderr
    assert figure.read_bytes() == before


def test_group_row_joins_single_task_folders(tiny_glue, tmp_path):
    _fake_results(tmp_path, tiny_glue, "s-rte", {"rte": [60, 62, 64]})
    _fake_results(tmp_path, tiny_glue, "s-cola", {"cola": [20, 30]})
    _fake_results(tmp_path, tiny_glue, "multi",
                  {"rte": [70, 71, 72], "cola": [25, 35, 45]})
    data = report.build_report(str(tmp_path),
                               ["single=s-rte+s-cola", "multi"])
    single = data["models"]["single"]
    # Trials 1 and 2 are finished in both folders: avg (60+20)/2, (62+30)/2.
    assert single["n_trials"] == 2
    assert single["left_out"] == {"s-rte": [3]}
    assert "multi" in data["models"] and "left_out" not in data["models"][
        "multi"]
    assert ("single: trial 3 of s-rte left out (not finished in every "
            "folder of the row).") in report.format_markdown(data)
    assert single["scores"]["avg"] == [40.0, 46.0]
    assert single["median"] == {"rte": 61.0, "cola": 25.0, "avg": 43.0}
    tests = {(c["task"], c["test"]): c["p"] for c in data["comparisons"]}
    assert tests[("rte", "mann_whitney_u")] == pytest.approx(
        stats.mannwhitneyu([60, 62], [70, 71, 72],
                           alternative="two-sided").pvalue)
    assert tests[("avg", "mann_whitney_u")] == pytest.approx(
        stats.mannwhitneyu([40, 46], [47.5, 53, 58.5],
                           alternative="two-sided").pvalue)
    # results.json holds its metrics sorted (cola before rte); the columns
    # follow the run's task_names, rte then cola, as the user named them.
    with open(tmp_path / "models" / "multi" / "results.json") as f:
        assert list(json.load(f)["trials"][0]["metrics"]) == ["cola", "rte"]
    alone = report.build_report(str(tmp_path), ["multi"])
    assert alone["tasks"] == ["rte", "cola"]
    assert report.format_markdown(alone).startswith(
        "| model | trials | rte | cola | avg |")
    with pytest.raises(report.ReportError, match="both"):
        report.build_report(str(tmp_path), ["x=s-rte+multi"])
    with pytest.raises(report.ReportError, match="expected"):
        report.parse_model_spec("=a+b")


def _fake_train_predictions(bam_dir, glue_dir, name, task_name, outputs_of,
                            trials=(1, 2)):
    """A model folder whose finished trials wrote training-set predictions
    `outputs_of(examples, trial)`, read as the run reads its training set
    (unordered pairs doubled)."""
    task = get_task(task_name)
    _fake_results(bam_dir, glue_dir, name,
                  {task_name: [50.0 + t for t in trials]})
    folder = os.path.join(bam_dir, "models", name)
    examples = load_split(task, "train", glue_dir)
    for trial in trials:
        write_predictions(_predictions_path(folder, task_name, "train", trial),
                          task, examples, examples.eids,
                          outputs_of(examples, trial))
    return examples


def test_train_split_rescored_from_predictions(tiny_glue, tmp_path):
    rng = np.random.default_rng(0)
    flips, accuracy = {1: 0.1, 2: 0.25}, {}

    def rte_logits(examples, trial):
        wrong = rng.random(len(examples)) < flips[trial]
        accuracy[trial] = 100 * (1 - wrong.mean())
        predicted = np.where(wrong, 1 - examples.labels, examples.labels)
        return np.eye(2, dtype=np.float32)[predicted]

    noisy = {}

    def sts_predictions(examples, trial):
        noisy[trial] = (examples.labels
                        + rng.normal(0, trial, len(examples))).astype(
                            np.float32)
        return noisy[trial]

    _fake_train_predictions(tmp_path, tiny_glue, "s-rte", "rte", rte_logits)
    sts = _fake_train_predictions(tmp_path, tiny_glue, "s-sts", "sts",
                                  sts_predictions)
    data = report.build_report(str(tmp_path), ["single=s-rte+s-sts"],
                               split="train")
    assert data["split"] == "train"
    scores = data["models"]["single"]["scores"]
    # Trial scores come from the files, not from results.json (51, 52).
    np.testing.assert_allclose(scores["rte"], [accuracy[1], accuracy[2]])
    assert len(sts) == 2 * 64  # both orders of each pair, as in training
    expected_sts = [100 * stats.spearmanr(sts.labels, noisy[t])[0]
                    for t in (1, 2)]
    np.testing.assert_allclose(scores["sts"], expected_sts)
    assert expected_sts[0] > expected_sts[1]
    np.testing.assert_allclose(
        scores["avg"], np.add(scores["rte"], scores["sts"]) / 2)
    assert "scored on the train set" in report.format_markdown(data)

    # A second row: only Mann-Whitney U tests; no bootstrap over training
    # examples.
    _fake_train_predictions(tmp_path, tiny_glue, "m", "rte", rte_logits)
    data = report.build_report(str(tmp_path), ["s-rte", "m"], split="train")
    assert {c["test"] for c in data["comparisons"]} == {"mann_whitney_u"}


def test_train_split_names_trials_without_predictions(tiny_glue, tmp_path):
    def logits(examples, trial):
        return np.eye(2, dtype=np.float32)[examples.labels]

    _fake_train_predictions(tmp_path, tiny_glue, "a", "rte", logits,
                            trials=(1,))
    # results.json says two trials finished; trial 2 wrote no training-set
    # predictions (as trials past --n_writes_distill do).
    _fake_results(tmp_path, tiny_glue, "a", {"rte": [50.0, 51.0]})
    data = report.build_report(str(tmp_path), ["a"], split="train")
    assert data["models"]["a"]["n_trials"] == 1
    assert data["models"]["a"]["scores"]["rte"] == [100.0]
    assert data["models"]["a"]["no_predictions"] == {"a": [2]}
    assert ("a: trial 2 of a left out (no train predictions file)."
            in report.format_markdown(data))
    assert data["models"]["a"]["std"]["rte"] is None
    assert "| a | 1 | 100.0 | 100.0 |" in report.format_markdown(data)
    # In a row of folders, those without are named in the row's column
    # order (as the dev report names them), not alphabetically.
    _fake_train_predictions(tmp_path, tiny_glue, "z-sts", "sts",
                            lambda e, t: e.labels.astype(np.float32) + t,
                            trials=(1,))
    _fake_results(tmp_path, tiny_glue, "z-sts", {"sts": [70.0, 71.0]})
    data = report.build_report(str(tmp_path), ["row=z-sts+a"], split="train")
    assert list(data["models"]["row"]["scores"]) == ["sts", "rte", "avg"]
    assert list(data["models"]["row"]["no_predictions"]) == ["z-sts", "a"]
    markdown = report.format_markdown(data)
    assert markdown.index("trial 2 of z-sts") < markdown.index("trial 2 of a")
    _fake_results(tmp_path, tiny_glue, "none", {"rte": [50.0]})
    with pytest.raises(report.ReportError,
                       match=r"none: no finished trial has train predictions"):
        report.build_report(str(tmp_path), ["none"], split="train")

    # Predictions made on other texts (the data changed since).
    examples = load_split(get_task("rte"), "train", tiny_glue)
    edited = dataclasses.replace(
        examples, text_a=["edited"] + examples.text_a[1:])
    _fake_results(tmp_path, tiny_glue, "b", {"rte": [50.0]})
    write_predictions(
        _predictions_path(str(tmp_path / "models" / "b"), "rte", "train", 1),
        get_task("rte"), edited, edited.eids,
        np.eye(2, dtype=np.float32)[examples.labels])
    with pytest.raises(report.ReportError,
                       match=r"rte_train_predictions_1\.npz: its examples "
                             r"are not the train set"):
        report.build_report(str(tmp_path), ["b"], split="train")
    with pytest.raises(report.ReportError, match="expected one of"):
        report.build_report(str(tmp_path), ["b"], split="test")


def test_bootstrap_names_trials_without_dev_predictions(tiny_glue, tmp_path):
    # Close models, so that p is not at its floor and depends on which
    # trials the bootstrap tests.
    _fake_model(tmp_path, tiny_glue, "strong", [80, 82, 81], 0.6, 1)
    _fake_model(tmp_path, tiny_glue, "weak", [60, 61, 59], 0.5, 2)
    full = report.build_report(str(tmp_path), ["strong", "weak"],
                               bootstrap_samples=200)
    assert all("no_dev_predictions" not in m
               for m in full["models"].values())
    p_full = {c["task"]: c["p"] for c in full["comparisons"]
              if c["test"] == "bootstrap"}["rte"]
    # Trial 2's file lost (or past --n_writes_test): the medians keep its
    # score from results.json, the bootstrap tests trials 1 and 3 only.
    folder = str(tmp_path / "models" / "strong")

    def classes(name, trials):
        return [read_predictions(_predictions_path(
            str(tmp_path / "models" / name), "rte", "dev", t))["logits"]
            .argmax(-1) for t in trials]
    kept, weak = classes("strong", (1, 3)), classes("weak", (1, 2, 3))
    os.remove(_predictions_path(folder, "rte", "dev", 2))
    data = report.build_report(str(tmp_path), ["strong", "weak"],
                               bootstrap_samples=200)
    assert data["models"]["strong"]["no_dev_predictions"] == {"strong": [2]}
    assert data["models"]["strong"]["median"]["rte"] == 81.0
    labels = load_split(get_task("rte"), "dev", tiny_glue).labels
    expected = statistics.paired_bootstrap(scoring.accuracy, labels, kept, weak,
                                           200, 0)
    tests = {(c["task"], c["test"]): c["p"] for c in data["comparisons"]}
    assert tests[("rte", "bootstrap")] == expected != p_full
    assert 1 / 201 < expected < 1
    assert ("strong: trial 2 of strong without dev predictions (bootstrap "
            "tests over its other trials; none where no trial has them).") \
        in report.format_markdown(data)
    # No dev predictions at all on one side: Mann-Whitney only.
    for t in (1, 3):
        os.remove(_predictions_path(folder, "rte", "dev", t))
    data = report.build_report(str(tmp_path), ["strong", "weak"],
                               bootstrap_samples=200)
    assert {c["test"] for c in data["comparisons"]} == {"mann_whitney_u"}
    assert data["models"]["strong"]["no_dev_predictions"] == {
        "strong": [1, 2, 3]}


def test_average_bootstrap_does_not_depend_on_the_task_order(
        tiny_glue, tmp_path):
    # Close models, so that p is not at its floor.
    def average_p(task_names, model_names):
        _fake_model(tmp_path, tiny_glue, "a", [60], 0.6, 1, task_names)
        _fake_model(tmp_path, tiny_glue, "b", [55], 0.5, 2, task_names)
        data = report.build_report(str(tmp_path), model_names,
                                   bootstrap_samples=200)
        p = {(c["task"], c["test"]): c["p"] for c in data["comparisons"]}
        return data["tasks"], p[("avg", "bootstrap")]
    columns, p = average_p(["rte", "cola"], ["a", "b"])
    assert columns == ["rte", "cola"] and 1 / 201 < p < 1
    assert average_p(["cola", "rte"], ["a", "b"]) == (["cola", "rte"], p)
    assert average_p(["rte", "cola"], ["b", "a"])[1] == p


@pytest.mark.skipif(not os.path.isdir(SHARED_GLUE),
                    reason="needs ../shared/glue_data")
def test_committed_report_is_rebuilt_identically_from_its_folders():
    """The canonical folders (written by an earlier version; their configs
    name paths relative to their BAM_DIR only) give the committed report,
    with the GLUE folder given where it is (as docs/results/rebuild.sh
    does)."""
    results = os.path.join(REPO, "docs", "results")
    with open(os.path.join(results, "reports", "table1.json")) as f:
        committed = json.load(f)
    rebuilt = report.build_report(
        results, ["Single=minilm-rte-single+minilm-mrpc-single+"
                  "minilm-sts-single+minilm-cola-single",
                  "Multi=minilm-multi",
                  "Single->Multi=minilm-single-to-multi"],
        glue_dir=SHARED_GLUE)
    assert json.loads(json.dumps(rebuilt)) == committed


def _committed_files(folder):
    """The files git tracks under `folder`: a checkout that adds trials to
    docs/results (as results.md shows) also holds what runs write and git
    ignores (runs.json, checkpoints), which name the machine's paths."""
    try:
        listed = subprocess.run(
            ["git", "-C", REPO, "ls-files", "-z", "--", folder],
            capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout (git ls-files)")
    return [os.path.join(REPO, p) for p in listed.decode().split("\0") if p]


def test_canonical_results_hold_one_copy_and_no_machine_paths():
    files = _committed_files(os.path.join("docs", "results"))
    assert any(p.endswith("results.json") for p in files)
    seen = {}
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        assert data not in seen, (path, seen.get(data))
        seen[data] = path
        if path.endswith((".json", ".md", ".sh")):
            text = data.decode("utf-8")
            for machine in ("/work/", "/root/", "/home/", "/tmp/"):
                assert machine not in text, (path, machine)


def test_report_help_loads_no_tensorflow():
    """report.py is numpy and scipy work: its --help (and the report) must
    not wait for TensorFlow, Keras and the training stack to load."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime",
         os.path.join(REPO, "scripts", "report.py"), "--help"],
        capture_output=True, text=True, timeout=120)
    assert "paired" in result.stdout  # the help was printed
    imported = [line.rsplit("|", 1)[-1].strip()
                for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert "bam_tf.analysis.report" in imported
    heavy = [m for m in imported if m.split(".")[0] in (
        "tensorflow", "keras", "keras_hub", "tensorflow_datasets")]
    assert heavy == []


def _predictions_path(model_dir, task_name, split, trial):
    return ModelDir.at(model_dir).predictions_path(task_name, split, trial)
