"""Locks and claims for a model folder shared by several processes, on one
machine or many (a shared filesystem): no server, only files.

`FolderLock` is a short exclusive lock for read-merge-write updates
(results.json, the run's settings, taking a claim). It uses the operating
system's `flock`; where the filesystem refuses it (some NFS set-ups without
a lock daemon: ENOLCK, EOPNOTSUPP), a lock file made with O_EXCL, which
NFS v3 and later create atomically, and which a lock holder that died is
taken from (same host: its pid is gone; another host: older than
`stale_secs`).

A `Claim` marks one trial as being trained by one process: host, pid, the
process's start time and a heartbeat that a thread refreshes while the
trial runs. Another process skips a live claim and takes over a dead one
(same host: the pid is gone or is another process; another host: no
heartbeat for `claim_timeout_secs`), with a warning naming it.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time

from absl import logging

from bam_tf.errors import BamError
from bam_tf.io_utils import atomic_write_json

# flock errors that mean "this filesystem has no locks", not "held".
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class LockError(BamError):
    pass


class ClaimLostError(BamError):
    """Another process took over this process's trial (its claim looked
    dead: a long pause, or a host whose heartbeat stopped)."""


def this_process():
    """{"host", "pid", "started"}: `started` tells a pid from a later
    process that reuses it (the start time in clock ticks since boot, from
    /proc; None where there is none)."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": _start_ticks(os.getpid())}


def _start_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # Field 22; the command name (field 2) may hold spaces, so
            # count from its closing parenthesis.
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_alive(owner):
    """Whether the process `owner` (a `this_process()` dict) still runs on
    this host."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        pass
    started = owner.get("started")
    return started is None or _start_ticks(pid) in (None, started)


def _describe(owner):
    when = owner.get("claimed_at")
    stamp = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
             if isinstance(when, (int, float)) else "?")
    return (f"host {owner.get('host')!r}, pid {owner.get('pid')}, since "
            f"{stamp}")


def claim_alive(holder, claim_timeout_secs):
    """Whether the process of a claim may still run: on this host, its
    pid is that process; on another, its heartbeat is recent."""
    if holder.get("host") == socket.gethostname():
        return process_alive(holder)
    beat = holder.get("heartbeat")
    return isinstance(beat, (int, float)) and (
        time.time() - beat < claim_timeout_secs)


class FolderLock:
    """An exclusive lock on a folder, held for short updates.

    Example:

    ```python
    with FolderLock(model_dir):
        results = read(); results.update(mine); write(results)
    ```
    """

    def __init__(self, folder, timeout_secs=600.0, stale_secs=600.0):
        self.path = os.path.join(folder, ".lock")
        self.timeout_secs = timeout_secs
        self.stale_secs = stale_secs
        # One lock object serves several threads (a trial's heartbeat and
        # its training loop): each holds its own descriptor, and flock
        # keeps two descriptors of one process apart as it does processes.
        self._held = threading.local()

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        deadline = time.monotonic() + self.timeout_secs
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._held.fd, fd = fd, None
                    return self
                except BlockingIOError:
                    pass
                except OSError as e:
                    if e.errno not in _NO_FLOCK:
                        raise
                    os.close(fd)
                    fd = None
                    self._take_lock_file(deadline)
                    self._held.fd = "file"
                    return self
                if time.monotonic() > deadline:
                    raise LockError(
                        f"{self.path}: still locked by another process after "
                        f"{self.timeout_secs:.0f} s.")
                time.sleep(0.05)
        finally:
            if fd is not None:
                os.close(fd)

    def _take_lock_file(self, deadline):
        path = self.path + ".held"
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                owner = _read_json(path) or {}
                same_host = owner.get("host") == socket.gethostname()
                age = time.time() - _mtime(path)
                if (same_host and not process_alive(owner)) or (
                        age > self.stale_secs):
                    logging.warning("%s: taking over a lock left by %s.",
                                    path, _describe(owner))
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
                    continue
                if time.monotonic() > deadline:
                    raise LockError(f"{path}: held by {_describe(owner)}.")
                time.sleep(0.05)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({**this_process(), "claimed_at": time.time()}, f)
            return

    def __exit__(self, *exc):
        fd, self._held.fd = self._held.fd, None
        if fd == "file":
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path + ".held")
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return False


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _mtime(path):
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


class Claim:
    """This process's hold on one trial; see the module docstring.

    Make claims with `take` under the folder's lock; refresh with
    `heartbeat()` while training; `check()` before writing what lasts;
    `release()` once the trial's record is in results.json. `lock` is the
    folder's `FolderLock`, taken for every read-then-write of the claim
    file, so that a heartbeat never overwrites another process's takeover.
    """

    def __init__(self, path, owner, lock):
        self.path = path
        self.owner = owner
        self.lock = lock
        self.lost = False

    @classmethod
    def take(cls, path, claim_timeout_secs, lock):
        """The claim on `path` for this process, or None when a live
        process holds it. Call with `lock` held."""
        held = _read_json(path) if os.path.exists(path) else None
        if os.path.exists(path) and held is None:
            logging.warning("%s: unreadable claim file; taken over.", path)
        elif held is not None:
            if claim_alive(held, claim_timeout_secs):
                return None
            logging.warning(
                "%s: taking over the trial from %s, which is gone (%s).",
                path, _describe(held),
                "its process has ended"
                if held.get("host") == socket.gethostname()
                else f"no heartbeat for {claim_timeout_secs:.0f} s")
        now = time.time()
        owner = {**this_process(), "claimed_at": now, "heartbeat": now}
        atomic_write_json(path, owner)
        return cls(path, owner, lock)

    @staticmethod
    def holder(path):
        """Who holds the claim at `path` (a dict), or None."""
        return _read_json(path)

    def _is_mine(self):
        held = _read_json(self.path)
        return held is not None and all(
            held.get(k) == self.owner[k]
            for k in ("host", "pid", "started", "claimed_at"))

    def check(self):
        """Raises ClaimLostError when another process has taken the trial
        over since this one claimed it."""
        if self.lost or not self._is_mine():
            self.lost = True
            held = _read_json(self.path) or {}
            raise ClaimLostError(
                f"{self.path}: this trial was taken over by "
                f"{_describe(held)} while this process "
                f"({_describe(self.owner)}) ran it; this process stops "
                "without writing its results, which the other one writes.")

    @contextlib.contextmanager
    def heartbeat(self, every_secs):
        """Refreshes the claim every `every_secs` in a thread while the
        block runs; a claim found taken over is marked `lost`."""
        stop = threading.Event()

        def beat():
            while not stop.wait(every_secs):
                with self.lock:
                    if not self._is_mine():
                        self.lost = True
                        return
                    self.owner["heartbeat"] = time.time()
                    atomic_write_json(self.path, self.owner)

        thread = threading.Thread(target=beat, daemon=True,
                                  name=f"heartbeat:{self.path}")
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def release(self):
        """Removes the claim file if it is still this process's. Call with
        the lock held."""
        if self._is_mine():
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
