"""`TrialHold`: one trial of a model folder held by this process, from
its claim to its record in results.json; `claim_trials` hands them out.
`follow_trials` hands a non-chief worker of a cluster the trials it
trains beside the chief, writing nowhere in the folder.

The sharing protocol of a folder (docs/usage.md, "Many trials, many
machines") in one place: under the folder's lock a finished trial is
skipped and an unfinished one is claimed; a running trial's claim is
refreshed by a heartbeat; its record is merged under the lock only while
the claim is still this process's; the claim is then released and, the
record being safe, the trial's training checkpoints deleted.
"""

import shutil

from absl import logging

from bam_tf.store.locking import Claim
from bam_tf.store.locking import ClaimLostError


class TrialHold:
    """This process's hold on one trial: train inside `with hold:` and
    `commit` the record before the block ends.

    Leaving the block stops the heartbeat and releases the claim; a
    committed trial's checkpoints are deleted, a failed one's kept (the
    next command resumes from them). A hold lost to another process (this
    one was paused past the claim timeout) ends the block with a warning:
    the trial is the other process's now.
    """

    # Where the trial's checkpoints and logs are written: the folder
    # itself (a follower's are in a scratch folder).
    scratch = None

    def __init__(self, folder, trial, claim, heartbeat_secs):
        self.folder = folder
        self.trial = trial
        self.claim = claim
        self.heartbeat_secs = heartbeat_secs
        self.committed = False
        self._beat = None

    @property
    def written(self):
        """The `ModelDir` the trial's checkpoints and logs go to."""
        return self.scratch or self.folder

    @property
    def lost(self):
        return self.claim.lost

    def check(self):
        """Raises ClaimLostError when the trial is no longer this
        process's; call before writing anything lasting."""
        self.claim.check()

    def commit(self, record):
        """Merges the trial's record into results.json, if the claim is
        still this process's."""
        with self.folder.lock():
            self.claim.check()
            self.folder.merge_results([record])
        self.committed = True

    def __enter__(self):
        self._beat = self.claim.heartbeat(self.heartbeat_secs)
        self._beat.__enter__()
        return self

    def __exit__(self, kind, error, trace):
        try:
            self._beat.__exit__(kind, error, trace)
        finally:
            # Free for the next command at once.
            with self.folder.lock():
                self.claim.release()
        if self.committed:
            shutil.rmtree(self.folder.checkpoints_dir(self.trial),
                          ignore_errors=True)
        if isinstance(error, ClaimLostError):
            logging.warning("%s", error)
            return True
        return False


def claim_trials(folder, trials, claim_timeout_secs, heartbeat_secs,
                 follow=False):
    """Yields a `TrialHold` for each of `trials` that is neither finished
    nor held by another live process, in order.

    `follow`: this process is a non-chief worker of a multi-worker
    cluster, and `trials` are the ones its chief trains, as the chief
    announces them (`bam_tf.distribute.followed_trials`): `follow_trials`.

    Example:

    ```python
    for hold in claim_trials(folder, [1, 2, 3], 600.0, 30.0):
        with hold:
            record = train(hold.trial, hold=hold)
            hold.commit(record)
    ```
    """
    if follow:
        yield from follow_trials(folder, trials)
        return
    held = {}
    for trial in trials:
        with folder.lock():
            if trial in folder.finished_trials():
                logging.info("trial %d already finished; kept.", trial)
                continue
            claim = Claim.take(folder.claim_path(trial), claim_timeout_secs,
                               folder.lock())
        if claim is None:
            held[trial] = Claim.holder(folder.claim_path(trial)) or {}
            logging.info("trial %d is being run by host %r, pid %s; "
                         "skipped.", trial, held[trial].get("host"),
                         held[trial].get("pid"))
            continue
        yield TrialHold(folder, trial, claim, heartbeat_secs)
    # Those skipped may have finished while this process trained its own.
    held = sorted(set(held) - folder.finished_trials())
    if held:
        logging.warning(
            "%s: trials %s are still being run by other processes; "
            "results.json gets them when they finish.", folder.path, held)


class FollowedTrial:
    """A trial a non-chief worker trains in step with the chief: it holds
    no claim and commits nothing. It resumes from the chief's checkpoints
    (`folder`) and writes its own (saving takes every worker, as
    checkpoints may need collective reads) to `scratch`."""

    lost = False

    def __init__(self, folder, trial, scratch):
        self.folder = folder
        self.trial = trial
        self.scratch = scratch

    @property
    def written(self):
        return self.scratch

    def check(self):
        pass

    def commit(self, record):
        pass

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        return False


def follow_trials(folder, trials):
    """Yields a `FollowedTrial` for each of `trials`, the chief's (it
    decides which are finished or held elsewhere, and says so as it goes:
    a worker reading the folder itself could read it at another moment and
    train another trial than the chief's), writing to one scratch folder,
    deleted when the generator ends or is closed."""
    with type(folder).scratch(folder.name) as scratch:
        for trial in trials:
            yield FollowedTrial(folder, trial, scratch)
