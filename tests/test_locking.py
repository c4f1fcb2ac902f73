"""Folder locks, trial claims and file permissions, with real processes
where the behaviour is about processes."""

import errno
import fcntl
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from bam_tf.store import locking
from bam_tf.store.locking import Claim
from bam_tf.store.locking import ClaimLostError
from bam_tf.store.locking import FolderLock
from bam_tf.io_utils import atomic_write_json
from bam_tf.io_utils import atomic_write_text

from conftest import REPO

# Each process adds 1 to a counter file 40 times: read, pause, write. Any
# update made outside the lock loses increments.
_COUNTER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from bam_tf.store.locking import FolderLock
    folder = sys.argv[1]
    path = os.path.join(folder, "count")
    for _ in range(40):
        with FolderLock(folder):
            with open(path) as f:
                n = int(f.read())
            time.sleep(0.002)
            with open(path, "w") as f:
                f.write(str(n + 1))
""")


def _count_with_processes(tmp_path, extra=""):
    (tmp_path / "count").write_text("0")
    script = tmp_path / "counter.py"
    script.write_text(extra + _COUNTER.format(repo=REPO))
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path)])
             for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    return int((tmp_path / "count").read_text())


def test_folder_lock_excludes_other_processes(tmp_path):
    assert _count_with_processes(tmp_path) == 120


def test_lock_file_fallback_excludes_other_processes(tmp_path):
    # A filesystem without flock (some NFS set-ups): ENOLCK for every call.
    no_flock = textwrap.dedent("""
        import errno, fcntl
        def _refuse(*args):
            raise OSError(errno.ENOLCK, "No locks available")
        fcntl.flock = _refuse
    """)
    assert _count_with_processes(tmp_path, no_flock) == 120
    assert not os.path.exists(tmp_path / ".lock.held")


def test_lock_file_of_a_dead_process_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(fcntl, "flock", lambda *a: (_ for _ in ()).throw(
        OSError(errno.ENOLCK, "No locks available")))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / ".lock.held").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": int(dead), "started": None}))
    with FolderLock(str(tmp_path), timeout_secs=5):
        assert os.path.exists(tmp_path / ".lock.held")
    assert not os.path.exists(tmp_path / ".lock.held")


def test_a_held_lock_times_out_naming_the_file(tmp_path):
    outer = FolderLock(str(tmp_path))
    with outer:
        errors = []

        def other_thread():
            try:
                with FolderLock(str(tmp_path), timeout_secs=0.3):
                    pass
            except locking.LockError as e:
                errors.append(str(e))
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert errors and str(tmp_path / ".lock") in errors[0]


def _sleeper():
    return subprocess.Popen([sys.executable, "-c",
                             "import time; time.sleep(60)"])


def _claim_file(path, **owner):
    atomic_write_json(str(path), {"claimed_at": time.time(),
                                  "heartbeat": time.time(), **owner})


def test_claim_of_a_live_process_is_kept_of_a_dead_one_taken(tmp_path,
                                                            caplog):
    path = tmp_path / "trial_1.json"
    lock = FolderLock(str(tmp_path))
    live = _sleeper()
    try:
        _claim_file(path, host=socket.gethostname(), pid=live.pid,
                    started=locking.process_start_ticks(live.pid))
        assert Claim.take(str(path), 600, lock) is None
        # The same pid with another start time is another process (a pid
        # reused after the claimer died).
        _claim_file(path, host=socket.gethostname(), pid=live.pid,
                    started=locking.process_start_ticks(live.pid) + 1)
        assert Claim.take(str(path), 600, lock) is not None
    finally:
        live.kill()
        live.wait()
    _claim_file(path, host=socket.gethostname(), pid=live.pid, started=None)
    claim = Claim.take(str(path), 600, lock)
    assert claim is not None
    assert f"pid {live.pid}" in caplog.text and "its process has ended" in (
        caplog.text)
    assert json.loads(path.read_text())["pid"] == os.getpid()


def test_claim_from_another_host_is_taken_after_its_heartbeat_stops(
        tmp_path):
    path = tmp_path / "trial_1.json"
    lock = FolderLock(str(tmp_path))
    _claim_file(path, host="other-host", pid=1, started=None)
    assert Claim.take(str(path), 600, lock) is None  # fresh heartbeat
    owner = json.loads(path.read_text())
    owner["heartbeat"] = time.time() - 601
    atomic_write_json(str(path), owner)
    assert Claim.take(str(path), 600, lock) is not None


def test_heartbeat_refreshes_and_a_taken_over_claim_is_lost(tmp_path):
    path = tmp_path / "trial_1.json"
    lock = FolderLock(str(tmp_path))
    claim = Claim.take(str(path), 600, lock)
    first = json.loads(path.read_text())["heartbeat"]
    with claim.heartbeat(0.05):
        time.sleep(0.3)
        assert json.loads(path.read_text())["heartbeat"] > first
        claim.check()  # still ours
        # Another host takes it over (this process looked dead to it).
        _claim_file(path, host="other-host", pid=7, started=None)
        time.sleep(0.3)
        assert claim.lost
    with pytest.raises(ClaimLostError, match="taken over by host "
                       "'other-host', pid 7"):
        claim.check()
    assert json.loads(path.read_text())["host"] == "other-host"
    claim.release()  # not ours: left alone
    assert path.exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640),
                                         (0o077, 0o600)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(str(tmp_path / "a.json"), {"x": 1})
        atomic_write_text(str(tmp_path / "b.txt"), "x")
    finally:
        os.umask(old)
    for name in ("a.json", "b.txt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode


def _state(pid):
    """Field 3 of /proc/<pid>/stat, after the command name."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_an_ended_unreaped_process_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = {"host": socket.gethostname(), "pid": child.pid,
             "started": locking.process_start_ticks(child.pid)}
    deadline = time.monotonic() + 60
    while _state(child.pid) != "Z":  # ended, not reaped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not locking.process_alive(owner)
    child.wait()
    assert not locking.process_alive(owner)
    assert locking.process_alive(locking.this_process())


def test_a_claim_from_another_machine_with_the_same_host_name_waits(
        tmp_path):
    """Two containers named alike: the other's pid means nothing here, so
    its claim is judged by its heartbeat."""
    path = tmp_path / "trial_1.json"
    lock = FolderLock(str(tmp_path))
    _claim_file(path, host=socket.gethostname(), pid=os.getpid() + 10 ** 6,
                started=None, machine="another-boot/pid:[1]")
    assert Claim.take(str(path), 600, lock) is None


def test_a_follower_takes_the_trials_it_is_given_and_writes_nothing(
        tmp_path):
    """A non-chief worker's trials (`claim_trials(..., follow=True)`): the
    ones its chief announces, even one the folder holds as finished (the
    chief decides), unclaimed, their checkpoints in a scratch folder that
    is gone at the end; the model folder is left as it was."""
    from bam_tf.store.model_dir import ModelDir
    folder = ModelDir(str(tmp_path), "m")
    folder.merge_results([{"trial": 2, "seed": 2, "avg": 1.0,
                           "metrics": {"rte": {"score": 1.0}}}])
    before = sorted(os.listdir(folder.path))
    taken, scratches = [], set()
    for hold in folder.claim_trials([1, 2, 3], 600.0, 30.0, follow=True):
        with hold:
            assert hold.folder is folder and not hold.lost
            assert hold.written is hold.scratch
            assert hold.scratch.name == "m"
            assert hold.scratch.bam_dir != folder.bam_dir
            hold.check()
            hold.commit({"trial": hold.trial})  # the chief's to write
            taken.append(hold.trial)
            scratches.add(hold.scratch.bam_dir)
    assert taken == [1, 2, 3]
    assert len(scratches) == 1 and not os.path.exists(scratches.pop())
    assert sorted(os.listdir(folder.path)) == before
    assert folder.finished_trials() == {2}


@pytest.mark.parametrize("finishes", [True, False])
def test_trials_held_elsewhere_are_told_only_if_still_unfinished(
        tmp_path, caplog, finishes):
    """Trial 1 is another live process's: this one skips it and trains
    trial 2. The closing warning names trial 1 only if it is still not in
    results.json by then (it said so of a trial finished seconds before)."""
    from bam_tf.store.model_dir import ModelDir
    from conftest import claim_of_a_live_process
    folder = ModelDir(str(tmp_path), "m")
    record = lambda t: {"trial": t, "seed": t, "avg": 1.0,
                        "metrics": {"rte": {"score": 1.0}}}
    os.makedirs(os.path.dirname(folder.claim_path(1)))
    with claim_of_a_live_process(folder.claim_path(1)):
        with caplog.at_level("INFO", logger="absl"):
            for hold in folder.claim_trials([1, 2], 600.0, 30.0):
                with hold:
                    assert hold.trial == 2
                    if finishes:  # the other process, meanwhile
                        folder.merge_results([record(1)])
                    hold.commit(record(2))
    assert "trial 1 is being run by host" in caplog.text
    assert ("trials [1] are still being run" in caplog.text) != finishes
