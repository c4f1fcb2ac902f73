"""Training through run.train_and_evaluate under MirroredStrategy (two
logical CPUs) and MultiWorkerMirroredStrategy (two worker processes on
localhost) gives the same losses and weights as one device on the same
global batches."""

import json
import os
import shutil
import socket
import subprocess
import sys

import h5py
import numpy as np
import pytest

from bam_tf.config import ConfigError
from bam_tf import distribute
from bam_tf.distribute import get_strategy
from bam_tf.distribute import is_chief
from bam_tf.experiment import run
from bam_tf.runtime import Runtime
from bam_tf.store.model_dir import ModelDir
from conftest import claim_of_a_live_process
from conftest import distribute_config

HERE = os.path.dirname(os.path.abspath(__file__))


def _config(bam_dir, glue_dir, name):
    return distribute_config(bam_dir, glue_dir, name)


def _trial(bam_dir, name):
    with open(os.path.join(bam_dir, "models", name, "results.json")) as f:
        return json.load(f)["trials"][0]


def _weights(bam_dir, name):
    path = os.path.join(bam_dir, "models", name, "checkpoints",
                        "trial_1.weights.h5")
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()])
                     if isinstance(o, h5py.Dataset) else None)
    return out


def _assert_same_run(bam_dir, name, reference="one_device"):
    a, b = _trial(bam_dir, name), _trial(bam_dir, reference)
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], atol=1e-5)
    assert a["steps"] == b["steps"]
    wa, wb = _weights(bam_dir, name), _weights(bam_dir, reference)
    assert sorted(wa) == sorted(wb) and len(wa) > 20
    for key in wa:
        np.testing.assert_allclose(wa[key], wb[key], atol=1e-5, err_msg=key)


@pytest.fixture(scope="module")
def bam_dir(tmp_path_factory, tiny_glue):
    bam_dir = str(tmp_path_factory.mktemp("distribute"))
    run.train_and_evaluate(_config(bam_dir, tiny_glue, "one_device"),
                           verbose=0)
    return bam_dir


def test_default_strategy_is_chief():
    assert is_chief(get_strategy("default"))


def test_mirrored_run_equals_one_device(bam_dir, tiny_glue, mirrored):
    run.train_and_evaluate(_config(bam_dir, tiny_glue, "mirrored"), mirrored,
                           verbose=0)
    _assert_same_run(bam_dir, "mirrored")


def test_micro_batches_make_the_same_run(bam_dir, tiny_glue):
    # Batches of 16 as 4 micro-batches of 4: the same losses and weights.
    run.train_and_evaluate(_config(bam_dir, tiny_glue, "micro"), verbose=0,
                           runtime=Runtime(micro_batch_size=4))
    _assert_same_run(bam_dir, "micro")


def test_mirrored_micro_batches_make_the_same_run(bam_dir, tiny_glue,
                                                   mirrored):
    # Each replica's 8 examples as 2 micro-batches of 4.
    run.train_and_evaluate(_config(bam_dir, tiny_glue, "mirrored_micro"),
                           mirrored, verbose=0,
                           runtime=Runtime(micro_batch_size=4))
    _assert_same_run(bam_dir, "mirrored_micro")
    # 8 divides the global batch of 24 but not a replica's 12: refused
    # before anything is written.
    wide = _config(bam_dir, tiny_glue, "uneven").replace(train_batch_size=24)
    with pytest.raises(ConfigError, match="train_batch_size 24 over 2 "
                       "replica"):
        run.train_and_evaluate(wide, mirrored, verbose=0,
                               runtime=Runtime(micro_batch_size=8))
    assert not os.path.exists(os.path.join(bam_dir, "models", "uneven"))
    # At least a replica's batch: each replica's 8 examples at once, the
    # run without micro-batches.
    run.train_and_evaluate(_config(bam_dir, tiny_glue, "mirrored_whole"),
                           mirrored, verbose=0,
                           runtime=Runtime(micro_batch_size=16))
    _assert_same_run(bam_dir, "mirrored_whole")
    assert _trial(bam_dir, "mirrored_whole")["runtime"][
        "micro_batch_size"] is None


def _dev_predictions(bam_dir, name):
    path = os.path.join(bam_dir, "models", name, "outputs",
                        "rte_dev_predictions_1.npz")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def test_mirrored_packed_micro_batches_make_the_same_run(bam_dir, tiny_glue,
                                                         mirrored):
    # Each replica's 8 examples packed as 2 micro-batches of 4, each in
    # its own rows; dev predictions packed one group per replica.
    config = _config(bam_dir, tiny_glue, "mirrored_packed").replace(
        padding="packed")
    run.train_and_evaluate(config, mirrored, verbose=0,
                           runtime=Runtime(micro_batch_size=4))
    _assert_same_run(bam_dir, "mirrored_packed")
    packed = _dev_predictions(bam_dir, "mirrored_packed")
    padded = _dev_predictions(bam_dir, "one_device")
    assert sorted(packed) == sorted(padded)
    for key in packed:
        if key == "logits":
            np.testing.assert_allclose(packed[key], padded[key], atol=1e-5)
        else:
            np.testing.assert_array_equal(packed[key], padded[key])


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _worker(bam_dir, glue_dir, index, ports, *args):
    """Starts worker `index` of multi_worker_driver.py."""
    return subprocess.Popen(
        [sys.executable, os.path.join(HERE, "multi_worker_driver.py"),
         bam_dir, glue_dir, str(index), ports, *args],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _two_workers(bam_dir, glue_dir, *args):
    """Runs both workers of multi_worker_driver.py; returns [(returncode,
    log)]."""
    ports = ",".join(str(p) for p in _free_ports(2))
    workers = [_worker(bam_dir, glue_dir, i, ports, *args) for i in range(2)]
    logs = []
    try:
        for worker in workers:
            logs.append(worker.communicate(timeout=300)[0])
    finally:
        for worker in workers:
            worker.kill()
    return [(worker.returncode, log) for worker, log in zip(workers, logs)]


def test_two_workers_on_localhost_equal_one_device(bam_dir, tiny_glue):
    mdir = os.path.join(bam_dir, "models", "multi_worker")
    # A folder whose trial 1 is finished, overwritten by a chief that
    # opens it late: the other worker must not take trial 1 as finished
    # (it would skip the trial the chief trains, and the chief's
    # collectives would have no peer): it trains what the chief says.
    shutil.copytree(os.path.join(bam_dir, "models", "one_device"), mdir)
    results = _two_workers(bam_dir, tiny_glue, "multi_worker", "overwrite",
                           "slow_chief")
    for i, (returncode, log) in enumerate(results):
        assert returncode == 0, f"worker {i}:\n{log[-3000:]}"
    _assert_same_run(bam_dir, "multi_worker")
    # The chief wrote the outputs; the other worker left nothing behind.
    assert os.path.exists(
        os.path.join(mdir, "outputs", "rte_dev_predictions_1.npz"))
    assert not os.path.exists(os.path.join(mdir, "checkpoints", "trial_1"))


def test_a_chief_refused_by_the_folder_stops_every_worker(bam_dir,
                                                          tiny_glue):
    mdir = os.path.join(bam_dir, "models", "refused")
    shutil.copytree(os.path.join(bam_dir, "models", "one_device"), mdir)
    before = {name: open(os.path.join(mdir, name), "rb").read()
              for name in ("results.json", "identity.json", "config.json")}
    (chief_code, chief_log), (worker_code, worker_log) = _two_workers(
        bam_dir, tiny_glue, "refused", "other_run")
    assert chief_code == 2 and "holds a run with another identity" in (
        chief_log), chief_log[-3000:]
    # Named, not a hang nor a collective's traceback: as worker 0 when
    # TensorFlow reports the chief's closed socket, else without a number
    # (the chief took the coordination service with it).
    assert worker_code == 2 and any(
        f"FATAL: {who} of this run stopped" in worker_log
        for who in ("Worker 0 (worker)", "Another worker")), (
        worker_log[-3000:])
    for name, data in before.items():
        assert open(os.path.join(mdir, name), "rb").read() == data


def test_a_lost_worker_is_named_and_the_run_resumes(bam_dir, tiny_glue):
    # The other worker dies (SIGKILL) after step 6 of 24; the chief's
    # last checkpoint is step 4.
    (chief_code, chief_log), (worker_code, _) = _two_workers(
        bam_dir, tiny_glue, "lost_worker", "worker_dies")
    assert worker_code == -9
    # Named when TensorFlow's message names it: its heartbeat check (as
    # usual here) or the socket a collective was reading (seen once, on a
    # loaded machine; test_how_a_worker_loss_is_told pins both wordings).
    assert chief_code == 2 and any(
        f"FATAL: {who} of this run stopped" in chief_log
        for who in ("Worker 1 (worker)", "Another worker")), (
        chief_log[-3000:])
    assert "Traceback" not in chief_log, chief_log[-3000:]
    mdir = os.path.join(bam_dir, "models", "lost_worker")
    assert not os.path.exists(os.path.join(mdir, "results.json"))
    assert os.listdir(os.path.join(mdir, "claims")) == []  # free to resume
    # The same command on both again: it resumes, and ends as one device.
    results = _two_workers(bam_dir, tiny_glue, "lost_worker")
    for i, (returncode, log) in enumerate(results):
        assert returncode == 0, f"worker {i}:\n{log[-3000:]}"
    assert "resumed at step 4 of 24" in results[0][1]
    _assert_same_run(bam_dir, "lost_worker")


def test_a_worker_started_again_alone_is_named(bam_dir, tiny_glue):
    # Worker 1 dies (SIGKILL) after step 6 and is started again at once,
    # as a supervisor would: TensorFlow refuses its new process ("another
    # incarnation") and the chief stops with one line naming it.
    ports = ",".join(str(p) for p in _free_ports(2))
    chief = _worker(bam_dir, tiny_glue, 0, ports, "restarted",
                    "worker_dies")
    dying = _worker(bam_dir, tiny_glue, 1, ports, "restarted",
                    "worker_dies")
    again = None
    try:
        assert dying.wait(timeout=300) == -9, dying.communicate()[0]
        again = _worker(bam_dir, tiny_glue, 1, ports, "restarted")
        chief_log = chief.communicate(timeout=300)[0]
    finally:
        for worker in (chief, dying, again):
            if worker is not None:
                worker.kill()
                worker.communicate()
    assert chief.returncode == 2, chief_log[-3000:]
    assert "Traceback" not in chief_log, chief_log[-3000:]
    # Started again before the chief's heartbeat check found it lost (as
    # it is here, in seconds), it is named as restarted; found lost first,
    # as stopped. Either way by its number, never a trace: the code before
    # ended in AbortedError's trace, and the wording of each case is
    # pinned by test_how_a_worker_loss_is_told.
    assert ("FATAL: Worker 1 (worker) of this run was started again"
            in chief_log or "FATAL: Worker 1 (worker) of this run stopped"
            in chief_log), chief_log[-3000:]
    mdir = os.path.join(bam_dir, "models", "restarted")
    assert not os.path.exists(os.path.join(mdir, "results.json"))
    assert os.listdir(os.path.join(mdir, "claims")) == []  # free to resume
    assert os.path.isdir(os.path.join(mdir, "checkpoints", "trial_1"))


@pytest.mark.parametrize("message, line", [
    # As TensorFlow words them: a restarted worker and a closed socket as
    # real runs' logs showed them; the others from TensorFlow's strings.
    ("Collective ops is aborted by: Error reported from /job:worker/task:1:"
     " /job:worker/replica:0/task:1 unexpectedly tried to connect with a "
     "different incarnation. It has likely restarted.\nThe error could be "
     "from a previous operation. Restart your program to reset.",
     "Worker 1 (worker) of this run was started again while the others"),
    ("Collective ops is aborted by: cluster check alive failed, "
     "/job:worker/replica:0/task:1 is down",
     "Worker 1 (worker) of this run stopped"),
    ("Collective ops is aborted by: The following tasks are unhealthy "
     "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\n",
     "Worker 1 (worker) of this run stopped"),
    ("Collective ops is aborted by: Socket closed\nAdditional GRPC error "
     "information from remote target /job:worker/replica:0/task:1 while "
     "calling /tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received "
     "from peer  {grpc_status:14, grpc_message:\"Socket closed\"}",
     "Worker 1 (worker) of this run stopped"),
    ("Collective ops is aborted by: Socket closed",
     "Another worker of this run stopped"),
    ("failed to connect to all addresses; the NFS server is down", None),
])
def test_how_a_worker_loss_is_told(message, line):
    told = distribute._worker_loss(message)
    if line is None:
        assert told is None
    else:
        assert told.startswith(line) and "start the same command on every "\
            "worker again to resume" in told


def test_a_trial_held_elsewhere_is_skipped_by_every_worker(bam_dir,
                                                           tiny_glue):
    """Trial 1 is being run by another process: the chief skips it and
    trains trial 2, and so does the other worker, told by the chief."""
    folder = ModelDir(bam_dir, "held")
    with claim_of_a_live_process(folder.claim_path(1)):
        results = _two_workers(bam_dir, tiny_glue, "held", "two_trials")
    for i, (returncode, log) in enumerate(results):
        assert returncode == 0, f"worker {i}:\n{log[-3000:]}"
        assert "trial 2: seed" in log and "trial 1: seed" not in log, i
    assert "trial 1 is being run by host" in results[0][1]
    assert folder.finished_trials() == {2}
