"""Faults end a command with one named line, and lose nothing written
before: Ctrl-C and SIGTERM, a read-only file system, a full disk. Real
`run_classifier.py` processes on tiny debug runs; the file systems are
small tmpfs mounts (skipped where this machine does not allow mounting)."""

import errno
import json
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from bam_tf.errors import os_fault_message
from bam_tf.io_utils import atomic_open
from bam_tf.io_utils import atomic_write_json

from conftest import REPO

FAST = ["--flagfile=" + os.path.join(REPO, "flags", "debug.cfg"),
        "--max_seq_length=32", "--debug_hidden_size=32",
        "--debug_vocab_size=200", "--num_train_epochs=2",
        "--noeval_each_epoch", "--task_names=rte", "--n_writes_test=1",
        "--n_writes_distill=1"]


def _args(bam, glue, *extra):
    return [sys.executable, os.path.join(REPO, "scripts", "run_classifier.py"),
            "--model_name=m", f"--bam_dir={bam}", f"--glue_dir={glue}",
            *FAST, *extra]


def _run(bam, glue, *extra):
    return subprocess.run(_args(bam, glue, *extra), capture_output=True,
                          text=True, timeout=600)


def _files(root):
    """{relative path: bytes} of every file under `root`."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def test_fault_messages_by_hand():
    assert os_fault_message(OSError(errno.EROFS, "Read-only file system",
                                    "/data/models/m")) == (
        "/data/models/m: read-only file system; pass a folder on a "
        "writable file system.")
    assert os_fault_message(OSError(errno.ENOTDIR, "Not a directory",
                                    "/x/bam")).startswith(
        "/x/bam: a file stands where a folder is expected")
    full = tf.errors.ResourceExhaustedError(
        None, None, "/b/ckpt-4_temp/part-0; No space left on device "
        "[Op:SaveV2]")
    assert os_fault_message(full) == (
        "/b/ckpt-4_temp/part-0; No space left on device [Op:SaveV2]: no "
        "space left on the device; free some space and run the same "
        "command again: it resumes from the last checkpoint.")
    # A write names no file: the message does not repeat strerror; h5py's
    # names its file in the text.
    assert os_fault_message(OSError(errno.ENOSPC, "No space left on "
                                    "device")) == (
        "no space left on the device; free some space and run the same "
        "command again: it resumes from the last checkpoint.")
    assert os_fault_message(PermissionError(
        errno.EACCES, "Unable to create file (name = '/m/w.h5')")) == (
        "[Errno 13] Unable to create file (name = '/m/w.h5'): permission "
        "denied; give this user write access there, or pass another "
        "folder.")
    assert os_fault_message(ValueError("bad")) is None
    assert os_fault_message(OSError(errno.ENOENT, "missing", "f")) is None


def test_a_bucket_path_is_refused_before_anything_is_written(tmp_path,
                                                             tiny_glue):
    # Taken for a relative path, it would become ./gs:/bucket/bam.
    done = subprocess.run(_args("gs://bucket/bam", tiny_glue), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: --bam_dir=gs://bucket/bam is a URL (gs://)"), done.stderr
    assert os.listdir(tmp_path) == []


def test_a_usage_error_gives_its_reason_first(tmp_path):
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "born_again.py"),
         f"--bam_dir={tmp_path}", "--model_name=p"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: --model_name (the prefix), --task_names and --bam_dir are "
        "required.",
        "usage: born_again.py [flags]; born_again.py --helpshort lists its "
        "flags."]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_says_how_to_resume(tmp_path, tiny_glue, signum):
    bam = tmp_path / "bam"
    proc = subprocess.Popen(
        _args(bam, tiny_glue, "--save_checkpoints_steps=1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A child of pytest may inherit an ignored SIGINT (TRAPS.md 10).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoints = bam / "models" / "m" / "checkpoints" / "trial_1"
    deadline = time.monotonic() + 300
    while not glob.glob(str(checkpoints / "ckpt-*.index")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted ({name}): every finished trial and the last "
        "checkpoint are kept; run the same command again to resume.")
    # The checkpoint it had is whole: the same command resumes from it.
    assert glob.glob(str(checkpoints / "ckpt-*.index"))
    assert not glob.glob(str(checkpoints / "*_temp*"))
    if signum == signal.SIGTERM:
        done = _run(bam, tiny_glue, "--save_checkpoints_steps=1")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "resumed at step" in done.stderr


@pytest.fixture
def mount(tmp_path):
    """mount(size) -> a fresh tmpfs folder of that size; unmounted after."""
    mounted = []

    def make(size):
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}",
                               "tmpfs", str(where)], capture_output=True)
        if done.returncode:
            pytest.skip("this machine does not allow mounting a tmpfs")
        mounted.append(where)
        return where
    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_read_only_file_system_is_named(mount, tiny_glue):
    where = mount("4m")
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
    done = _run(where / "bam", tiny_glue)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {where}/bam") and last.endswith(
        ": read-only file system; pass a folder on a writable file system.")


def test_a_refused_write_names_the_file_not_its_temporary_copy(mount):
    where = mount("1m")
    (where / "comparisons").mkdir()
    path = str(where / "comparisons" / "bam.json")
    atomic_write_json(path, {"kept": 1})
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
    with pytest.raises(OSError) as refused:  # mkstemp names its file
        atomic_write_json(path, {"kept": 2})
    assert os_fault_message(refused.value) == (
        f"{path}: read-only file system; pass a folder on a writable file "
        "system.")
    subprocess.run(["mount", "-o", "remount,rw", str(where)], check=True)
    with pytest.raises(OSError) as full:  # a write names none
        with atomic_open(path) as f:
            f.write("x" * (2 << 20))  # more than the 1 MB file system
    assert full.value.filename == path and full.value.errno == errno.ENOSPC
    assert json.load(open(path)) == {"kept": 1}
    assert os.listdir(where / "comparisons") == ["bam.json"]
    # Another file's fault in the block keeps its own name.
    with pytest.raises(FileNotFoundError) as other:
        with atomic_open(path) as f:
            open(where / "missing.txt").read()
    assert other.value.filename == str(where / "missing.txt")


def test_a_full_disk_is_named_keeps_what_was_written_and_resumes(
        mount, tiny_glue):
    where = mount("64m")
    bam = where / "bam"
    first = _run(bam, tiny_glue)
    assert first.returncode == 0, first.stderr[-3000:]
    before = _files(bam / "models" / "m")
    # Fill the disk, then ask for a second trial.
    filler = where / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass
    full = _run(bam, tiny_glue, "--num_trials=2")
    assert full.returncode == 1, full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    assert "no space left on the device; free some space and run the same " \
           "command again" in full.stderr.strip().splitlines()[-1]
    after = _files(bam / "models" / "m")
    # Trial 1's files are byte for byte as they were; nothing half-written
    # is left where a later run could take it for a real file.
    for path in before:
        if path not in ("runs.json", "config.json"):
            assert after[path] == before[path], path
    assert not [p for p in after if "tmp" in os.path.basename(p)
                or "_temp" in p]
    os.remove(filler)
    again = _run(bam, tiny_glue, "--num_trials=2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert os.path.exists(bam / "models" / "m" / "checkpoints" /
                          "trial_2.weights.h5")


def test_outputs_never_land_in_a_folder_bam_tf_owns(tmp_path):
    from bam_tf.store.ownership import check_output_file
    model = tmp_path / "bam" / "models" / "m"
    (model / "outputs").mkdir(parents=True)
    (model / "results.json").write_text("{}\n")
    (tmp_path / "bam" / "cache" / "features").mkdir(parents=True)
    data = tmp_path / "in.tsv"
    data.write_text("a\tb\n")
    assert check_output_file("--markdown", str(model / "results.json")) == (
        f"--markdown={model}/results.json is inside {model}, a folder "
        "bam-tf writes (a model folder, an export or the feature cache); "
        "write it elsewhere")
    assert "is inside" in check_output_file("--figure",
                                            str(model / "outputs" / "f.png"))
    assert "is inside" in check_output_file(
        "--output_json", str(tmp_path / "bam" / "cache" / "r.json"))
    assert check_output_file("--output_file", str(data), [str(data)]) == (
        f"--output_file={data} is also this command's input")
    assert check_output_file("--markdown", str(tmp_path)).endswith(
        "is a folder; give a file path")
    assert check_output_file("--markdown", str(tmp_path / "r.md")) is None
    assert check_output_file("--output_json", "gs://b/r.json").startswith(
        "--output_json=gs://b/r.json is a URL (gs://)")
    # The script refuses before reading anything; the file is untouched.
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "report.py"),
         f"--bam_dir={tmp_path / 'bam'}", "--model_names=m",
         f"--markdown={model / 'results.json'}"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: --markdown={model}/results.json is inside")
    assert (model / "results.json").read_text() == "{}\n"


def test_a_wrong_type_in_config_json_is_named(tmp_path):
    """A hand-edited config.json with a value of the wrong type: report.py
    names the file and the key (it ended in a TypeError), and the file is
    left as it was."""
    from bam_tf.config import PRESETS
    from bam_tf.config import RunConfig
    folder = tmp_path / "models" / "m"
    folder.mkdir(parents=True)
    values = RunConfig.from_dict({**PRESETS["debug"], "model_name": "m",
                                  "bam_dir": ".", "task_names": ["rte"]})
    values = {**values.to_dict(), "learning_rate": "abc"}
    text = json.dumps(values)
    (folder / "config.json").write_text(text)
    (folder / "results.json").write_text(json.dumps({"trials": [
        {"trial": 1, "seed": 1, "avg": 50.0,
         "metrics": {"rte": {"score": 50.0}}}]}))
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "report.py"),
         f"--bam_dir={tmp_path}", "--model_names=m"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "config.json" in last and (
        "learning_rate must be a number, got 'abc'") in last, last
    assert "--overwrite" not in last or "training command" in last
    assert (folder / "config.json").read_text() == text


def test_a_file_where_the_bam_dir_belongs_is_named(tmp_path, tiny_glue):
    blocker = tmp_path / "bam"
    blocker.write_text("not a folder\n")
    done = _run(blocker, tiny_glue)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {blocker}") and (
        "a file stands where a folder is expected") in last, last
    assert blocker.read_text() == "not a folder\n"


@pytest.mark.parametrize("script, args", [
    ("benchmark.py", ["--pretrained_model=none", "--glue_dir=none"]),
    ("data_stats.py", ["--task_names=rte"])])
def test_statistics_never_land_in_a_model_folder(tmp_path, script, args):
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True)
    (model / "results.json").write_text("{}\n")
    target = model / "results.json"
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", script), *args,
         f"--output_json={target}"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: --output_json={target} is inside {model}")
    assert target.read_text() == "{}\n"
