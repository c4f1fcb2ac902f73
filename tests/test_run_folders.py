"""Model folders that survive moving, sharing and parallel trials: real
`run_classifier.py` processes on tiny debug runs, paused, killed, moved
and run side by side."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO

# Four steps an epoch (64 RTE examples, batch 16).
FAST = ["--flagfile=" + os.path.join(REPO, "flags", "debug.cfg"),
        "--max_seq_length=32", "--padding=max_length",
        "--debug_hidden_size=32", "--debug_vocab_size=200",
        "--num_train_epochs=2", "--noeval_each_epoch", "--task_names=rte",
        "--n_writes_test=1", "--n_writes_distill=1"]


def _args(bam, glue, name="m", *extra):
    return [sys.executable, os.path.join(REPO, "scripts", "run_classifier.py"),
            f"--model_name={name}", f"--bam_dir={bam}", f"--glue_dir={glue}",
            *FAST, *extra]


def _run(bam, glue, *extra, name="m", umask=None):
    return subprocess.run(
        _args(bam, glue, name, *extra), capture_output=True, text=True,
        timeout=600, preexec_fn=(lambda: os.umask(umask)) if umask else None)


def _start(bam, glue, *extra, name="m"):
    return subprocess.Popen(_args(bam, glue, name, *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _folder(bam, name="m"):
    return os.path.join(str(bam), "models", name)


def _records(bam, name="m"):
    """Trial records as results.json holds them."""
    with open(os.path.join(_folder(bam, name), "results.json")) as f:
        return json.load(f)["trials"]


def _wait_for(path, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory, tiny_glue):
    """Trials 1 and 2 run one after the other by one process (umask
    022). Tests copy the folder before changing it."""
    bam = tmp_path_factory.mktemp("reference")
    result = _run(bam, tiny_glue, "--num_trials=2", umask=0o022)
    assert result.returncode == 0, result.stderr[-3000:]
    return bam


@pytest.fixture(scope="module")
def reference(reference_dir):
    return _records(reference_dir)


def _copy(reference_dir, tmp_path):
    shutil.copytree(reference_dir, tmp_path / "bam")
    return tmp_path / "bam"


def _trained_trials(stderr):
    """The trials a process trained (each logs its seed and steps)."""
    return sorted(int(line.split("trial ")[1].split(":")[0])
                  for line in stderr.splitlines()
                  if "] trial " in line and ": seed " in line)


def test_a_moved_folder_adds_trials_equal_to_one_run(tmp_path, tiny_glue,
                                                     reference):
    glue = tmp_path / "glue_a"
    shutil.copytree(tiny_glue, glue)
    first = _run(tmp_path / "bam_a", glue)
    assert first.returncode == 0, first.stderr[-3000:]
    os.rename(tmp_path / "bam_a", tmp_path / "bam_b")
    os.rename(glue, tmp_path / "glue_b")
    # --trials=2: only that trial, and the folder's num_trials grows to it.
    more = _run(tmp_path / "bam_b", tmp_path / "glue_b", "--trials=2")
    assert more.returncode == 0, more.stderr[-3000:]
    assert _trained_trials(more.stderr) == [2]
    assert _records(tmp_path / "bam_b") == reference
    folder = _folder(tmp_path / "bam_b")
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    # The BAM_DIR itself is ".": it is wherever the folder is. (A GLUE
    # folder outside it stays absolute: it does not move with it.)
    assert config["bam_dir"] == "."
    assert config["glue_dir"] == str(tmp_path / "glue_b")
    assert config["num_trials"] == 2
    with open(os.path.join(folder, "runs.json")) as f:
        runs = json.load(f)["runs"]
    assert [r["paths"]["bam_dir"] for r in runs] == [
        str(tmp_path / "bam_a"), str(tmp_path / "bam_b")]


def test_another_identity_is_refused_output_settings_are_recorded(
        tmp_path, tiny_glue, reference_dir):
    bam = _copy(reference_dir, tmp_path)
    other = _run(bam, tiny_glue, "--learning_rate=0.5")
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert ("differs in experiment.learning_rate (saved 0.001, now 0.5)"
            in other.stderr)
    # Output and runtime settings are not the run's identity.
    changed = _run(bam, tiny_glue, "--eval_batch_size=8",
                   "--n_writes_test=0", "--steps_per_execution=2",
                   "--num_trials=2")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "trial 2 already finished; kept." in changed.stderr
    with open(os.path.join(_folder(bam), "runs.json")) as f:
        runs = json.load(f)["runs"]
    assert [r["outputs"]["eval_batch_size"] for r in runs] == [64, 8]
    assert runs[1]["runtime"]["steps_per_execution"] == 2
    with open(os.path.join(_folder(bam), "config.json")) as f:
        assert json.load(f)["eval_batch_size"] == 8
    # Other data under the same name is another run.
    glue = tmp_path / "glue"
    shutil.copytree(tiny_glue, glue)
    path = glue / "RTE" / "train.tsv"
    path.write_text(path.read_text().replace("cat", "cow"))
    data = _run(bam, glue)
    assert data.returncode != 0 and "differs in data.rte/train" in (
        data.stderr)


def test_a_failed_start_writes_nothing(tmp_path, tiny_glue):
    wrong = _run(tmp_path, tmp_path / "nowhere")
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert not os.path.exists(os.path.join(_folder(tmp_path), "config.json"))
    teacher = _run(tmp_path, tiny_glue, "--distill", "--teachers=rte:none")
    assert teacher.returncode != 0 and "no model folder" in teacher.stderr
    assert not os.path.exists(os.path.join(_folder(tmp_path), "config.json"))
    right = _run(tmp_path, tiny_glue)
    assert right.returncode == 0, right.stderr[-3000:]


def test_two_processes_share_the_trials(tmp_path, tiny_glue, reference):
    procs = [_start(tmp_path, tiny_glue, "--num_trials=2") for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-2000:]
    trained = [_trained_trials(e) for e in errs]
    assert sorted(trained[0] + trained[1]) == [1, 2], trained
    assert _records(tmp_path) == reference
    assert os.listdir(os.path.join(_folder(tmp_path), "claims")) == []


def test_a_paused_process_keeps_its_trial(tmp_path, tiny_glue, reference):
    """The issue's scenario: a --num_trials=1 run paused while a
    --num_trials=2 run works on the folder, then continued."""
    paused = _start(tmp_path, tiny_glue, "--num_trials=1")
    claim = os.path.join(_folder(tmp_path), "claims", "trial_1.json")
    _wait_for(claim, paused)
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        other = _run(tmp_path, tiny_glue, "--num_trials=2")
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    assert other.returncode == 0, other.stderr[-3000:]
    assert _trained_trials(other.stderr) == [2]
    assert "trial 1 is being run by host" in other.stderr
    assert "trials [1] are still being run by other processes" in (
        other.stderr)
    _, err = paused.communicate(timeout=600)
    assert paused.returncode == 0, err[-3000:]
    assert _records(tmp_path) == reference


def test_a_killed_process_is_taken_over_and_resumed(tmp_path, tiny_glue,
                                                    reference):
    killed = _start(tmp_path, tiny_glue, "--num_trials=2",
                    "--save_checkpoints_steps=3")
    checkpoints = os.path.join(_folder(tmp_path), "checkpoints", "trial_1")
    _wait_for(os.path.join(checkpoints, "train_loss-3.json"), killed)
    _wait_for(os.path.join(checkpoints, "checkpoint"), killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    result = _run(tmp_path, tiny_glue, "--num_trials=2",
                  "--save_checkpoints_steps=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"pid {killed.pid}" in result.stderr
    assert "its process has ended" in result.stderr
    assert "trial 1: resumed at step" in result.stderr
    records = _records(tmp_path)
    losses = [r.pop("train_loss") for r in records]
    expected = [dict(r) for r in reference]
    np.testing.assert_allclose(losses, [r.pop("train_loss")
                                        for r in expected], rtol=1e-6)
    assert records == expected


def test_files_are_readable_as_the_umask_says(reference_dir):
    folder = _folder(reference_dir)
    written = ["config.json", "identity.json", "runs.json", "results.json",
               "results.txt", "vocab.txt",
               "outputs/rte_train_predictions_1.npz",
               "outputs/rte_dev_predictions_1.npz",
               "outputs/glue/1/RTE.tsv", "checkpoints/trial_1.weights.h5"]
    cache = os.path.join(str(reference_dir), "cache", "features")
    modes = {name: stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode)
             for name in written}
    modes.update({name: stat.S_IMODE(os.stat(os.path.join(cache,
                                                          name)).st_mode)
                  for name in os.listdir(cache)})
    assert set(modes.values()) == {0o644}, modes


@pytest.mark.parametrize("damage, message", [
    ("config.json", "config.json: damaged configuration file, not valid "
     "JSON"),
    ("identity.json", "identity.json: damaged run identity file"),
    ("results.json", "results.json: damaged results file"),
])
def test_a_damaged_file_is_named_and_nothing_is_lost(
        tmp_path, tiny_glue, reference_dir, damage, message):
    tmp_path = _copy(reference_dir, tmp_path)
    path = os.path.join(_folder(tmp_path), damage)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text[: len(text) // 2])
    before = {name: open(os.path.join(_folder(tmp_path), name), "rb").read()
              for name in ("config.json", "identity.json", "results.json")}
    result = _run(tmp_path, tiny_glue, "--num_trials=3")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr[-2000:]
    after = {name: open(os.path.join(_folder(tmp_path), name), "rb").read()
             for name in before}
    assert after == before


def test_results_record_without_a_key_is_named_by_the_report(
        tmp_path, reference_dir):
    tmp_path = _copy(reference_dir, tmp_path)
    path = os.path.join(_folder(tmp_path), "results.json")
    with open(path) as f:
        results = json.load(f)
    del results["trials"][0]["trial"]
    with open(path, "w") as f:
        json.dump(results, f)
    report = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "report.py"),
         f"--bam_dir={tmp_path}", "--model_names=m"],
        capture_output=True, text=True, timeout=300)
    assert report.returncode != 0 and "Traceback" not in report.stderr
    assert "results.json: trial record 1 has no integer 'trial'" in (
        report.stderr)


def test_a_truncated_weights_file_is_named(tmp_path, tiny_glue,
                                           reference_dir):
    tmp_path = _copy(reference_dir, tmp_path)
    weights = os.path.join(_folder(tmp_path), "checkpoints",
                           "trial_1.weights.h5")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    export = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "export.py"),
         f"--bam_dir={tmp_path}", "--model_name=m",
         f"--export_dir={tmp_path / 'export'}"],
        capture_output=True, text=True, timeout=300)
    assert export.returncode != 0 and "Traceback" not in export.stderr
    assert f"{weights}: unreadable or foreign weights file" in export.stderr
    init = _run(tmp_path, tiny_glue, "--init_from_model=m", name="ft")
    assert init.returncode != 0 and "Traceback" not in init.stderr
    assert f"{weights}: unreadable or foreign weights file" in init.stderr


def test_single_worker_multi_worker_trains_as_one_device(tmp_path,
                                                         tiny_glue,
                                                         reference):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run(_args(tmp_path, tiny_glue, "m",
                                  "--strategy=multi_worker"),
                            capture_output=True, text=True, timeout=600,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = _records(tmp_path)
    np.testing.assert_allclose(record.pop("train_loss"),
                               reference[0]["train_loss"], rtol=1e-5)
    assert record.pop("runtime") == {"strategy": "multi_worker",
                                     "replicas": 1, "micro_batch_size": None,
                                     "jit_compile": False}
    expected = {k: v for k, v in reference[0].items()
                if k not in ("train_loss", "runtime")}
    assert record == expected


def test_tpu_constraints_are_checked_before_connecting(tmp_path, tiny_glue):
    result = _run(tmp_path, tiny_glue, "--strategy=tpu", "--tpu=nowhere",
                  "--padding=buckets")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--strategy=tpu needs static shapes: pass --padding=packed or " \
        "max_length (got --padding=buckets)" in result.stderr
    assert "TPUClusterResolver" not in result.stderr
    assert not os.path.exists(_folder(tmp_path))
