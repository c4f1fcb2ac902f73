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
    """{"host", "pid", "started", "machine"}: `started` tells a pid from a
    later process that reuses it (its start time in clock ticks since
    boot, from /proc); `machine` tells two machines or containers with one
    host name apart (the boot id and the pid namespace). None where /proc
    has no answer."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": process_start_ticks(os.getpid()), "machine": _machine()}


def _machine():
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def _stat_fields(pid):
    """/proc/<pid>/stat after the command name (which may hold spaces and
    parentheses): field 3 (the state) first."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_start_ticks(pid):
    """When process `pid` started, in clock ticks since boot (with its pid,
    it names one process: pids are reused, start times are not), or None
    without /proc."""
    try:
        return int(_stat_fields(pid)[19])  # field 22
    except (OSError, IndexError, ValueError):
        return None


def same_machine(owner):
    """Whether `owner` ran on this machine, in this pid namespace (so its
    pid means the same process here)."""
    if owner.get("host") != socket.gethostname():
        return False
    machine = owner.get("machine")
    return machine is None or _machine() in (None, machine)


def process_alive(owner):
    """Whether the process `owner` (a `this_process()` dict) still runs on
    this machine. A zombie (ended, not yet reaped) has ended."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        pass
    try:
        fields = _stat_fields(pid)
    except OSError:
        return True  # no /proc: the pid is all there is to go by
    if fields[0] in ("Z", "X"):
        return False
    started = owner.get("started")
    try:
        return started is None or int(fields[19]) == started
    except (IndexError, ValueError):
        return True


def _describe(owner):
    when = owner.get("claimed_at")
    stamp = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
             if isinstance(when, (int, float)) else "?")
    return (f"host {owner.get('host')!r}, pid {owner.get('pid')}, since "
            f"{stamp}")


def claim_alive(holder, claim_timeout_secs):
    """Whether the process of a claim may still run: on this machine, its
    pid is that process; on another, its heartbeat is recent."""
    if same_machine(holder):
        return process_alive(holder)
    beat = holder.get("heartbeat")
    return isinstance(beat, (int, float)) and (
        time.time() - beat < claim_timeout_secs)


# The lock file a `FolderLock` keeps in its folder.
LOCK_FILE = ".lock"


class FolderLock:
    """An exclusive lock on a folder, held for short updates.

    Example:

    ```python
    with FolderLock(model_dir):
        results = read(); results.update(mine); write(results)
    ```
    """

    def __init__(self, folder, timeout_secs=600.0, stale_secs=600.0):
        self.path = os.path.join(folder, LOCK_FILE)
        self.timeout_secs = timeout_secs
        self.stale_secs = stale_secs
        # One lock object serves several threads (a trial's heartbeat and
        # its training loop): each holds its own descriptor, and flock
        # keeps two descriptors of one process apart as it does processes.
        self._held = threading.local()

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        deadline = time.monotonic() + self.timeout_secs
        while True:
            # Read-only: flock needs no write access, so a teammate's
            # 0644 lock file locks as well.
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() > deadline:
                    raise LockError(
                        f"{self.path}: still locked by another process after "
                        f"{self.timeout_secs:.0f} s.") from None
                time.sleep(0.05)
                continue
            except OSError as e:
                os.close(fd)
                if e.errno not in _NO_FLOCK:
                    raise LockError(f"{self.path}: cannot lock ({e}).") from None
                self._held.fd = self._take_lock_file(deadline)
                return self
            # A folder removed and made again (--overwrite) has a new lock
            # file: a lock on the old one locks nothing.
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(fd).st_ino:
                os.close(fd)
                continue
            self._held.fd = fd
            return self

    def _take_lock_file(self, deadline):
        """The O_EXCL lock file; returns what __exit__ needs to remove only
        a lock file that is still this holder's."""
        path = self.path + ".held"
        me = {**this_process(), "claimed_at": time.time()}
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                owner = _read_json(path) or {}
                age = time.time() - _mtime(path)
                if (same_machine(owner) and not process_alive(owner)) or (
                        age > self.stale_secs):
                    self._remove_stale(path, owner)
                    continue
                if time.monotonic() > deadline:
                    raise LockError(f"{path}: held by {_describe(owner)}.")
                time.sleep(0.05)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return ("file", me)

    @staticmethod
    def _remove_stale(path, owner):
        """Moves the stale lock file aside and removes it if it is the one
        judged stale; a fresh one that another waiter made meanwhile is put
        back (link fails rather than overwrite a newer one)."""
        aside = f"{path}.{os.getpid()}.{time.monotonic_ns()}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        if (_read_json(aside) or {}) == owner:
            logging.warning("%s: taking over a lock left by %s.", path,
                            _describe(owner))
        else:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
        os.remove(aside)

    def __exit__(self, *exc):
        held, self._held.fd = self._held.fd, None
        if isinstance(held, tuple):
            path = self.path + ".held"
            if _read_json(path) == held[1]:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
        else:
            fcntl.flock(held, fcntl.LOCK_UN)
            os.close(held)
        return False


def _same_process(owner):
    mine = this_process()
    return same_machine(owner) and all(
        owner.get(k) == mine[k] for k in ("pid", "started"))


def _parse_object(text):
    """A JSON object, or None for anything else (a damaged file)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return _parse_object(f.read())
    except (OSError, UnicodeDecodeError):
        return None


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
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            text = None
        held = _parse_object(text) if text is not None else None
        if text is not None and held is None:
            logging.warning("%s: unreadable claim file; taken over.", path)
        elif held is not None and _same_process(held):
            pass  # this process's own (a trial that failed here before)
        elif held is not None:
            if claim_alive(held, claim_timeout_secs):
                return None
            logging.warning(
                "%s: taking over the trial from %s, which is gone (%s).",
                path, _describe(held),
                "its process has ended" if same_machine(held)
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
        return held is not None and held.get("claimed_at") == (
            self.owner["claimed_at"]) and _same_process(held)

    def check(self):
        """Raises ClaimLostError when another process has taken the trial
        over since this one claimed it (or the claim is gone)."""
        if self.lost or not self._is_mine():
            self.lost = True
            held = _read_json(self.path)
            who = (f"taken over by {_describe(held)}" if held else
                   "released by another process (the trial finished "
                   "elsewhere, or the folder was overwritten)")
            raise ClaimLostError(
                f"{self.path}: this trial was {who} while this process "
                f"({_describe(self.owner)}) ran it; this process leaves it "
                "without writing its results.")

    @contextlib.contextmanager
    def heartbeat(self, every_secs):
        """Refreshes the claim every `every_secs` in a thread while the
        block runs; a claim found taken over is marked `lost`."""
        stop = threading.Event()

        def beat():
            failures = 0
            while not stop.wait(every_secs):
                try:
                    with self.lock:
                        if not self._is_mine():
                            self.lost = True
                            return
                        self.owner["heartbeat"] = time.time()
                        atomic_write_json(self.path, self.owner)
                    failures = 0
                except Exception as e:  # noqa: BLE001 (a full disk, ESTALE)
                    failures += 1
                    logging.warning("%s: heartbeat failed (%s: %s).",
                                    self.path, type(e).__name__, e)
                    if failures >= 3:
                        # Others will take the trial over soon: stop
                        # training it rather than train it twice.
                        self.lost = True
                        return

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
