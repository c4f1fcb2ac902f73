"""A recipe as a scheduler runs it (the printed commands, teachers before
students, trials side by side) and as copies of one born_again.py command
run it at once: the same folders, each trial trained once."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

FAST = ["--max_seq_length=32", "--padding=max_length",
        "--debug_hidden_size=32", "--debug_vocab_size=200",
        "--num_train_epochs=2", "--noeval_each_epoch", "--n_writes_test=0"]
MODELS = ["p-rte-single", "p-single-to-multi"]


def _born_again(bam, glue, *extra):
    return [sys.executable, os.path.join(REPO, "scripts", "born_again.py"),
            "--recipe=single_to_multi", "--model_name=p", "--task_names=rte",
            f"--bam_dir={bam}", f"--glue_dir={glue}", "--debug",
            "--num_trials=2", *FAST, *extra]


def _records(bam):
    out = {}
    for name in MODELS:
        with open(os.path.join(str(bam), "models", name,
                               "results.json")) as f:
            out[name] = json.load(f)["trials"]
    return out


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory, tiny_glue):
    """The printed commands, run as a scheduler would: both teacher trials
    at once, then both student trials at once."""
    bam = tmp_path_factory.mktemp("scheduled")
    printed = subprocess.run(_born_again(bam, tiny_glue, "--print_commands"),
                             capture_output=True, text=True, timeout=300,
                             cwd=REPO)
    assert printed.returncode == 0, printed.stderr[-3000:]
    lines = printed.stdout.splitlines()
    assert not os.path.exists(os.path.join(str(bam), "models"))
    for group in (lines[:2], lines[2:]):
        procs = [subprocess.Popen(line, shell=True, cwd=REPO,
                                  stderr=subprocess.PIPE, text=True)
                 for line in group]
        for p in procs:
            err = p.communicate(timeout=600)[1]
            assert p.returncode == 0, err[-3000:]
    return bam, lines


def test_printed_commands_are_one_per_trial_teachers_first(scheduled):
    _, lines = scheduled
    assert len(lines) == 4
    names = [re.search(r"--model_name=(\S+)", line).group(1)
             for line in lines]
    trials = [re.search(r"--trials=(\d+)", line).group(1) for line in lines]
    assert names == [MODELS[0]] * 2 + [MODELS[1]] * 2
    assert trials == ["1", "2", "1", "2"]
    assert all(line.startswith("python scripts/run_classifier.py ")
               for line in lines)
    assert "--distill --teachers=rte:p-rte-single" in lines[2]
    assert "--distill" not in lines[0]
    # The presets' values are spelled out: no flagfile needed.
    assert "--train_batch_size=16" in lines[0]
    assert "--num_train_epochs=2.0" in lines[2]


def test_the_recipe_finds_its_printed_commands_done(scheduled, tiny_glue):
    bam, _ = scheduled
    result = subprocess.run(_born_again(bam, tiny_glue), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in MODELS:
        assert f"{name}: finished earlier; skipped." in result.stderr
    assert "training (" not in result.stderr
    assert "p-single-to-multi" in result.stdout  # the table
    base = os.path.join(bam, "comparisons", "p_single_to_multi")
    assert result.stdout.rstrip().endswith(
        f"and this table to {base}.json and {base}.txt")
    assert os.path.isfile(base + ".json") and os.path.isfile(base + ".txt")


def _trained(stderr):
    """(model, trial) pairs a born_again.py process trained."""
    pairs, model = [], None
    for line in stderr.splitlines():
        started = re.search(r"\] (\S+): training \(", line)
        if started:
            model = started.group(1)
        trial = re.search(r"\] trial (\d+): seed ", line)
        if trial:
            pairs.append((model, int(trial.group(1))))
    return pairs


def test_copies_of_one_recipe_share_it_out(tmp_path, tiny_glue, scheduled):
    procs = [subprocess.Popen(_born_again(tmp_path, tiny_glue,
                                          "--wait_secs=1"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-3000:]
    trained = _trained(outs[0][1]) + _trained(outs[1][1])
    assert sorted(trained) == [(m, t) for m in MODELS for t in (1, 2)]
    # The same numbers as the scheduled commands, and the same table.
    assert _records(tmp_path) == _records(scheduled[0])
    table = lambda out: out[out.index("single_to_multi: dev scores"):]
    assert table(outs[0][0]) == table(outs[1][0])
