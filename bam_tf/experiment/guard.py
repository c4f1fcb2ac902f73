"""The model folder's guard: a folder holds one run, by identity
(`bam_tf.experiment.identity`). A start checks the folder's identity under
its lock before it writes anything, and a folder of another run is an
error, never overwritten unless asked."""

import os
import shutil

from absl import logging

from bam_tf import config as config_lib
from bam_tf.config import Runtime
from bam_tf.encoders.encoder import load_encoder
from bam_tf.errors import RunError
from bam_tf.experiment import identity as identity_lib
from bam_tf.experiment.model_dir import ModelDir


def encoder_fingerprint(config, pretrained_model=None):
    """The identity's encoder: a pretrained one is loaded to hash its
    weights and tokenizer (so a moved or re-saved copy is the same run),
    and checked against max_seq_length before anything is written."""
    if config.debug:
        return identity_lib.debug_encoder_fingerprint(config)
    encoder = load_encoder(pretrained_model or config.pretrained_model,
                           config.bam_dir)
    check_position_limit(config, encoder)
    return identity_lib.encoder_fingerprint(encoder)


def check_position_limit(config, encoder):
    if config.max_seq_length > encoder.position_limit:
        raise RunError(
            f"max_seq_length {config.max_seq_length} exceeds the encoder's "
            f"position limit {encoder.position_limit} ({encoder.source}).")


def check_identity(folder, config, identity, legacy_encoder=None):
    """Raises RunError when `folder` holds a run of another identity
    (`bam_tf.experiment.identity`): what decides the numbers differs. Paths, output
    settings and the runtime may differ. A folder holding nothing of
    value (no finished trial, no checkpoint: a start that failed) takes
    the new identity. Returns whether identity.json is to be (re)written.
    Call under the folder's lock."""
    saved = recorded = folder.read_identity()
    if saved is None:
        legacy = folder.read_saved_config()
        if legacy is None:
            return True
        if (identity["encoder"] is not None and folder.finished_trials()
                and os.path.exists(folder.runs_path)):
            # identity.json and runs.json came in one version, and a run
            # with its inputs writes identity.json at its first start:
            # trials beside a runs.json were checked against one, now
            # lost. Making one from this run's inputs would vouch for data
            # the finished trials may not have seen. (A check without the
            # run's inputs compares the experiment only, as before.)
            raise RunError(
                f"{folder.identity_path} is missing, and {folder.path} "
                f"holds finished trials {sorted(folder.finished_trials())} "
                "trained under it: this run cannot be checked against "
                "theirs. Restore identity.json from a copy of the folder, "
                "pick a new --model_name, or pass --overwrite to replace "
                "the folder.")
        saved = _legacy_identity(folder, legacy, config, identity,
                                 legacy_encoder)
    differ = identity_lib.differences(saved, identity)
    if identity["encoder"] is None:  # checked without the run's inputs
        differ = [d for d in differ if d.startswith("experiment.")]
    if not differ:
        return recorded is None
    if not folder.finished_trials() and not folder.has_checkpoints():
        logging.warning(
            "%s held a start of another run (differs in %s) that finished "
            "no trial and left no checkpoint: it now holds this one.",
            folder.path, ", ".join(differ))
        shutil.rmtree(folder.file("logs"), ignore_errors=True)
        return True
    old = identity_lib.experiment_as_read_now(saved.get("experiment", {}))
    new = identity_lib.experiment_as_read_now(identity["experiment"])
    shown = [f"{d} (saved {old[d[11:]]!r}, now {new[d[11:]]!r})"
             if d.startswith("experiment.") else d for d in differ]
    raise RunError(
        f"{folder.path} holds a run with another identity: it differs in "
        f"{', '.join(shown)}. Pick a new --model_name, or pass --overwrite "
        "to replace the folder.")


def _legacy_encoder(folder, config):
    """For a folder written before identity.json whose encoder path is not
    this run's: the fingerprint of the encoder at the saved path, where it
    still exists (None otherwise). Computed before the folder is locked:
    it loads a whole encoder."""
    if config.debug or os.path.exists(folder.identity_path):
        return None
    saved = folder.read_saved_config() or {}
    # Saved relative to the BAM_DIR ("./pretrained_models/x") by the
    # versions that write portable paths.
    path = folder.resolve(saved.get("pretrained_model"))
    if path and path != config.pretrained_model and os.path.isdir(path):
        return encoder_fingerprint(config, path)
    return None


def _legacy_identity(folder, saved_config, config, identity, encoder=None):
    """A folder written before identity.json: its experiment from
    config.json; its encoder by path, or by `encoder` (the fingerprint of
    the saved path's encoder, where that still exists); data and teachers
    were not recorded, so they are taken as they are now."""
    saved = dict(identity, experiment=config_lib.migrate(saved_config))
    path = folder.resolve(saved_config.get("pretrained_model"))
    if config.debug or path == config.pretrained_model:
        return saved
    if encoder is not None:
        saved["encoder"] = encoder
    else:
        logging.warning(
            "%s was written before runs recorded their encoder's "
            "fingerprint; it used %s, this run uses %s: taken as the same "
            "encoder (from now on its fingerprint is recorded).",
            folder.path, path, config.pretrained_model)
    return saved


def check_model_dir(config, overwrite=False, identity=None, runtime=None):
    """Claims `config`'s folder for its identity: an error if the folder
    holds another one; otherwise writes identity.json (once), config.json
    (the newest settings, with the folder's largest num_trials) and this
    start's line in runs.json. Returns the ModelDir."""
    folder = ModelDir.of(config)
    runtime = runtime or Runtime()
    if overwrite:
        _overwrite(folder, runtime)
    if identity is None:  # without data: the experiment alone
        identity = {"experiment": config.section("experiment"),
                    "encoder": None, "data": {}, "teachers": {},
                    "init": None}
    trials = runtime.trial_numbers(config.num_trials)
    if max(trials) > config.num_trials:
        logging.info("--trials=%s goes past --num_trials=%d: the folder "
                     "now holds %d trials.", ",".join(map(str, trials)),
                     config.num_trials, max(trials))
    legacy_encoder = (_legacy_encoder(folder, config)
                      if identity["encoder"] is not None else None)
    with folder.lock():
        write = check_identity(folder, config, identity, legacy_encoder)
        saved = folder.read_saved_config() or {}
        num_trials = max([config.num_trials, max(trials),
                          saved.get("num_trials", 1)]
                         + list(folder.finished_trials()))
        if write and identity["encoder"] is not None:
            folder.write_identity(identity)
        folder.write_config(config.replace(num_trials=num_trials))
        folder.record_start(config, runtime, trials)
    return folder


def _overwrite(folder, runtime):
    held = folder.live_claims(runtime.claim_timeout_secs)
    if held:
        trial, holder = next(iter(held.items()))
        raise RunError(
            f"--overwrite: {folder.path} is in use: trial {trial} is being "
            f"run by host {holder.get('host')!r}, pid {holder.get('pid')}. "
            "Stop it first.")
    folder.remove()
