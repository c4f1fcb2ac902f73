"""Opening a model folder for a start: a folder holds one run, by identity
(`bam_tf.store.identity`). A start checks the folder's identity under its
lock before it writes anything, and a folder of another run is an error,
never overwritten unless asked."""

import shutil

from absl import logging

from bam_tf.errors import RunError
from bam_tf.runtime import Runtime
from bam_tf.store import identity as identity_lib
from bam_tf.store import migration
from bam_tf.store.model_dir import ModelDir


def check_identity(folder, config, identity, earlier, finished):
    """Raises RunError when `folder` holds a run of another identity
    (`bam_tf.store.identity`): what decides the numbers differs. Paths, output
    settings and the runtime may differ. A folder holding nothing of
    value (no finished trial, no checkpoint: a start that failed) takes
    the new identity. `earlier`: the identity of a folder written before
    identity.json (`migration.earlier_identity`). `finished`: the
    folder's finished trials. Returns whether identity.json is to be
    (re)written. Call under the folder's lock."""
    saved = recorded = folder.read_identity()
    if saved is None and earlier is None:
        # identity.json may have gone since `earlier` was read (it was
        # there then); the encoder is then compared by path.
        earlier = migration.earlier_identity(folder, config, identity)
    if saved is None:
        saved = earlier
    if saved is None:
        return True
    # What a start of another run would replace.
    holds_value = finished or folder.has_checkpoints()
    try:
        differ = identity_lib.differences(saved, identity)
    except (TypeError, ValueError, AttributeError) as e:
        # A hand-edited file ("teachers": 5, say).
        where = (folder.identity_path if recorded is not None
                 else folder.config_path)
        raise RunError(f"{where}: a value of the wrong form ({e}); restore "
                       "the file from a copy.") from None
    if identity["encoder"] is None:  # checked without the run's inputs
        differ = [d for d in differ if d.startswith("experiment.")]
    if not differ:
        return recorded is None
    if not holds_value:
        logging.warning(
            "%s held a start of another run (differs in %s) that finished "
            "no trial and left no checkpoint: it now holds this one.",
            folder.path, ", ".join(differ))
        shutil.rmtree(folder.file("logs"), ignore_errors=True)
        return True
    old = identity_lib.experiment_as_read_now(saved.get("experiment", {}))
    # Now as the user gave it (--padding=packed, not the "longest" the
    # identity records for it).
    new = {**identity_lib.experiment_as_read_now(identity["experiment"]),
           **config.section("experiment")}
    shown = [f"{d} (saved {old[d[11:]]!r}, now {new[d[11:]]!r})"
             if d.startswith("experiment.") else d for d in differ]
    raise RunError(
        f"{folder.path} holds a run with another identity: it differs in "
        f"{', '.join(shown)}. Pick a new --model_name, or pass --overwrite "
        "to replace the folder.")


def open_model_dir(config, overwrite=False, identity=None, runtime=None,
                   trials=None):
    """Opens `config`'s folder for a start of the run `identity` names:
    an error if the folder holds another run; otherwise writes
    identity.json (once), config.json (the newest settings, with the
    folder's largest num_trials) and this start's line in runs.json.
    `identity` None checks the experiment alone (no data read).
    `trials`: the trial numbers this start runs (default `runtime`'s).
    Returns the ModelDir.

    Example:

    ```python
    folder = open_model_dir(config, identity=identity, runtime=runtime)
    for hold in folder.claim_trials([1, 2], 600.0, 30.0): ...
    ```
    """
    folder = ModelDir.of(config)
    runtime = runtime or Runtime()
    if overwrite:
        _overwrite(folder, runtime)
    if identity is None:  # without data: the experiment alone
        identity = {"experiment": config.section("experiment"),
                    "encoder": None, "data": {}, "teachers": {},
                    "init": None}
    trials = trials or runtime.trial_numbers(config.num_trials)
    if max(trials) > config.num_trials:
        logging.info("--trials=%s goes past --num_trials=%d: the folder "
                     "now holds %d trials.", ",".join(map(str, trials)),
                     config.num_trials, max(trials))
    # One step, before the lock: it may load the saved encoder.
    earlier = migration.earlier_identity(folder, config, identity)
    with folder.lock():
        finished = folder.finished_trials()
        write = check_identity(folder, config, identity, earlier, finished)
        saved = folder.read_saved_config() or {}
        num_trials = max([config.num_trials, max(trials),
                          saved.get("num_trials", 1)] + list(finished))
        folder.record_start(
            config.replace(num_trials=num_trials), runtime, trials,
            identity if write and identity["encoder"] is not None else None)
    return folder


def _overwrite(folder, runtime):
    remove_model_dirs([folder], runtime.claim_timeout_secs)


def remove_model_dirs(folders, claim_timeout_secs):
    """Deletes `folders` (`ModelDir`s), all or none: a folder one of whose
    trials a live process holds is an error naming it, before any is
    deleted. Warns of the other model folders of the BAM_DIR that learned
    from one of them (their students are left, and would be compared with
    the teachers trained anew).

    Example:

    ```python
    remove_model_dirs([ModelDir(bam_dir, "bam-rte-single")], 600.0)
    ```
    """
    for folder in folders:
        held = folder.live_claims(claim_timeout_secs)
        if held:
            trial, holder = next(iter(held.items()))
            raise RunError(
                f"--overwrite: {folder.path} is in use: trial {trial} is "
                f"being run by host {holder.get('host')!r}, pid "
                f"{holder.get('pid')}. Stop it first.")
    names = {folder.name for folder in folders}
    for folder in folders:
        for student in folder.students():
            if student.name not in names:
                logging.warning(
                    "%s learned from %s, which is replaced now: its "
                    "results are those of the replaced teacher. Replace it "
                    "too (its command with --overwrite) before comparing "
                    "it with the new one.", student.path, folder.name)
    for folder in folders:
        folder.remove()
