"""Folders written by earlier versions of bam-tf, read as this version
writes them: the one step between what is on disk and what the rest of
the code reads. Nothing here runs while a trial trains.

- config.json: keys that moved out of the configuration are dropped; keys
  added since take their defaults, which keep the earlier behaviour.
- A folder written before identity.json (config.json only): its saved
  identity is made from config.json. The experiment is its saved section;
  the encoder is compared by path, or by fingerprint where the saved path
  still holds an encoder; the data and teachers were not recorded, so
  they are taken as they are now. The next start that passes the check
  writes identity.json, and the folder is then as this version writes it.
- A Table 3 source folder written before identity.json: its encoder is
  compared by path.

tests/test_migration.py reads a folder written by version 0.2.0
(tests/data/folder_v0_2_0/).
"""

import os

from absl import logging

from bam_tf.errors import RunError

# Keys that earlier versions saved in config.json and that are no longer
# part of the configuration: `steps_per_execution` is how a run is
# carried out (`Runtime`).
MOVED_OUT = ("steps_per_execution",)


def config_as_read_now(saved):
    """A config.json written by any version, as `RunConfig.from_dict`
    takes it."""
    return {k: v for k, v in saved.items() if k not in MOVED_OUT}


def earlier_identity(folder, config, identity):
    """The identity of a folder written before identity.json, from its
    config.json, as `identity` (this run's) would read; None where the
    folder has identity.json or no config.json. Called before the folder
    is locked: where the saved encoder path is not this run's and still
    holds an encoder, that encoder is loaded whole, to fingerprint it."""
    # No folder yet (or a file in its place, which the lock names).
    if not os.path.isdir(folder.path) or os.path.exists(
            folder.identity_path):
        return None
    saved_config = folder.read_saved_config()
    if saved_config is None:
        return None
    if (identity["encoder"] is not None and folder.finished_trials()
            and os.path.exists(folder.runs_path)):
        # identity.json and runs.json came in one version, and a run with
        # its inputs writes identity.json at its first start: trials
        # beside a runs.json were checked against one, now lost. Making
        # one from this run's inputs would vouch for data the finished
        # trials may not have seen. (A check without the run's inputs
        # compares the experiment only.)
        raise RunError(
            f"{folder.identity_path} is missing, and {folder.path} "
            f"holds finished trials {sorted(folder.finished_trials())} "
            "trained under it: this run cannot be checked against "
            "theirs. Restore identity.json from a copy of the folder, "
            "pick a new --model_name, or pass --overwrite to replace "
            "the folder.")
    saved = dict(identity, experiment=config_as_read_now(saved_config))
    # Saved relative to the BAM_DIR ("./pretrained_models/x") by the
    # versions that write portable paths.
    path = folder.resolve(saved_config.get("pretrained_model"))
    if config.debug or path == config.pretrained_model:
        return saved
    if identity["encoder"] is not None and path and os.path.isdir(path):
        # Imported for such a folder only: keras-hub, and TensorFlow
        # through identity.py, which reading the store (reports) must
        # not load.
        from bam_tf.encoders.encoder import load_encoder
        from bam_tf.store.identity import encoder_fingerprint
        saved["encoder"] = encoder_fingerprint(
            load_encoder(path, config.bam_dir))
    else:
        logging.warning(
            "%s was written before runs recorded their encoder's "
            "fingerprint; it used %s, this run uses %s: taken as the same "
            "encoder (from now on its fingerprint is recorded).",
            folder.path, path, config.pretrained_model)
    return saved


def same_encoder_by_path(folder, config):
    """For a Table 3 source folder written before identity.json: whether
    its encoder is `config`'s, by the saved path."""
    # Saved relative to the BAM_DIR by the versions that write portable
    # paths.
    path = folder.resolve((folder.read_saved_config() or {}).get(
        "pretrained_model"))
    return config.debug or path == config.pretrained_model
