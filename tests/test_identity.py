"""A run's identity: the experiment, the encoder's, data's and teachers'
fingerprints; nothing about where files are or what is written."""

import dataclasses
import glob
import json
import os
import shutil

import numpy as np
import pytest

from bam_tf import config as config_lib
from bam_tf.config import ConfigError
from bam_tf.encoders.encoder import load_encoder
from bam_tf.errors import RunError
from bam_tf.runtime import Runtime
from bam_tf.store import identity as identity_lib
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.model_dir import ModelDirError
from bam_tf.store.opening import open_model_dir

from conftest import REPO
from conftest import debug_config
from conftest import tiny_backbone


def test_sections_split_every_field_once():
    names = [f.name for f in dataclasses.fields(config_lib.RunConfig)]
    sections = [k for keys in config_lib.SECTIONS.values() for k in keys]
    assert sorted(sections) == sorted(names)
    assert len(sections) == len(set(sections))
    for moved in ("steps_per_execution", "strategy", "micro_batch_size"):
        assert moved not in names


def _identity(**experiment):
    return {"experiment": experiment, "encoder": "e", "data": {"rte/train":
                                                               "d"},
            "teachers": {}, "init": None}


def test_differences_name_each_part():
    base = _identity(learning_rate=1e-3, task_names=["rte"])
    assert identity_lib.differences(base, base) == []
    other = _identity(learning_rate=0.5, task_names=["rte"])
    other["encoder"] = "f"
    other["data"] = {"rte/train": "x", "rte/dev": "y"}
    other["teachers"] = {"rte": "t"}
    assert identity_lib.differences(base, other) == [
        "experiment.learning_rate", "encoder", "data.rte/dev",
        "data.rte/train", "teachers.rte"]


def test_keys_added_since_a_folder_was_written_take_their_defaults():
    # An earlier config.json without task_loss_weights, with keys that are
    # no longer part of the experiment (paths, steps_per_execution).
    saved = {"learning_rate": 1e-3, "task_names": ["rte"], "bam_dir": "/x",
             "steps_per_execution": 4}
    now = identity_lib.experiment_as_read_now(
        {"learning_rate": 1e-3, "task_names": ("rte",),
         "task_loss_weights": ()})
    assert identity_lib.experiment_as_read_now(saved) == now
    weighted = dict(now, task_loss_weights={"rte": 2.0})
    assert identity_lib.differences(
        {"experiment": saved}, _identity(**weighted)) == [
        "experiment.task_loss_weights", "encoder", "data.rte/train"]


def test_config_paths_are_written_relative_to_the_bam_dir(tmp_path):
    (tmp_path / "bam" / "glue_data").mkdir(parents=True)
    (tmp_path / "glue").mkdir()
    config = debug_config(tmp_path / "bam", str(tmp_path / "glue"), "m",
                          ["rte"])
    folder = ModelDir.of(config)
    folder.record_start(config.replace(glue_dir=str(
        tmp_path / "bam" / "glue_data")), Runtime(), [1])
    assert folder.read_saved_config()["glue_dir"] == "./glue_data"
    folder.record_start(config, Runtime(), [1])
    saved = folder.read_saved_config()
    # Outside the BAM_DIR: absolute, as it does not move with it.
    assert (saved["bam_dir"], saved["glue_dir"]) == (".", str(
        tmp_path / "glue"))
    # Moved with its BAM_DIR, the folder reads its paths where it is now.
    shutil.move(str(tmp_path / "bam"), str(tmp_path / "moved"))
    moved = ModelDir(str(tmp_path / "moved"), "m").read_config()
    assert moved.bam_dir == str(tmp_path / "moved")
    assert moved.glue_dir == str(tmp_path / "glue")
    assert dataclasses.replace(moved, bam_dir=config.bam_dir) == config


def _preset(folder, backbone, tokenizer):
    backbone.save_to_preset(str(folder))
    tokenizer.save_to_preset(str(folder))
    return str(folder)


def test_encoder_fingerprint_follows_the_weights_not_the_path(
        tmp_path, tiny_tokenizer):
    first = _preset(tmp_path / "a", tiny_backbone(seed=0), tiny_tokenizer)
    copy = shutil.copytree(first, tmp_path / "b")
    other = _preset(tmp_path / "c", tiny_backbone(seed=1), tiny_tokenizer)
    prints = [identity_lib.encoder_fingerprint(load_encoder(p))
              for p in (first, copy, other)]
    assert prints[0] == prints[1] != prints[2]
    # One changed weight is another encoder.
    encoder = load_encoder(first)
    variable = encoder.backbone.weights[-1]
    variable.assign(variable.numpy() + np.float32(1e-3))
    assert identity_lib.encoder_fingerprint(encoder) != prints[0]


def test_targets_fingerprint_sees_any_change():
    targets = np.arange(6, dtype=np.float32).reshape(3, 2)
    same = identity_lib.targets_fingerprint(targets.copy())
    assert identity_lib.targets_fingerprint(targets) == same
    changed = targets.copy()
    changed[2, 1] += 1e-6
    assert identity_lib.targets_fingerprint(changed) != same
    assert identity_lib.targets_fingerprint(targets.reshape(2, 3)) != same


def test_runtime_is_checked_against_the_configuration(tmp_path):
    config = debug_config(tmp_path, str(tmp_path), "m", ["rte"])
    Runtime().validate(config)
    for padding in ("buckets", "longest"):
        with pytest.raises(ConfigError, match="--strategy=tpu needs static "
                           "shapes: pass --padding=packed or max_length "
                           f"\\(got --padding={padding}\\)"):
            Runtime(strategy="tpu").validate(config.replace(padding=padding))
    for padding in ("packed", "max_length"):
        Runtime(strategy="tpu").validate(config.replace(padding=padding))
    with pytest.raises(ConfigError, match="--tpu=x is given without"):
        Runtime(tpu="x").validate(config)
    with pytest.raises(ConfigError, match="micro_batch_size=3 must be a "
                       "positive divisor of each replica's batch: "
                       "train_batch_size 16"):
        Runtime(micro_batch_size=3).validate(config)
    # A micro-batch at least the replica's batch is the whole batch: one
    # value serves the 32- and 128-example steps of a recipe.
    for micro, replicas, expected in ((64, 1, None), (16, 1, None),
                                      (8, 1, 8), (8, 2, None), (4, 2, 4)):
        Runtime(micro_batch_size=micro).validate(config)
        assert Runtime(micro_batch_size=micro).micro_batches(
            config, replicas) == expected, (micro, replicas)
    assert Runtime().micro_batches(config) is None
    assert Runtime(trials=(5, 2)).trial_numbers(1) == [2, 5]
    assert Runtime().trial_numbers(3) == [1, 2, 3]


def _committed_folders():
    root = os.path.join(REPO, "docs", "results")
    return sorted(glob.glob(os.path.join(root, "models", "*",
                                         "config.json")))


def test_every_committed_folder_is_accepted_and_upgraded(tmp_path):
    """Folders written before identities (docs/results/models) add trials:
    their saved experiment is this run's, whatever the paths are now."""
    paths = _committed_folders()
    assert len(paths) == 10
    for i, path in enumerate(paths):
        source = os.path.dirname(path)
        bam = tmp_path / str(i)
        target = bam / "models" / os.path.basename(source)
        os.makedirs(target)
        for name in ("config.json", "results.json"):
            shutil.copy(os.path.join(source, name), target)
        folder = ModelDir(str(bam), os.path.basename(source))
        config = folder.read_config()
        assert config.bam_dir == str(bam)
        finished = folder.finished_trials()
        assert finished and max(finished) <= config.num_trials
        # The command again with another GLUE folder and one more trial.
        more = config.replace(glue_dir=str(tmp_path / "elsewhere"),
                              num_trials=config.num_trials + 1)
        identity = {"experiment": more.section("experiment"),
                    "encoder": "fingerprint", "data": {"x/train": "d"},
                    "teachers": {}, "init": None}
        open_model_dir(more, identity=identity)
        assert folder.read_identity() == json.loads(json.dumps(identity))
        assert folder.read_saved_config()["num_trials"] == more.num_trials
        with pytest.raises(RunError, match="experiment.seed"):
            open_model_dir(more.replace(seed=99), identity=dict(
                identity, experiment=more.replace(seed=99).section(
                    "experiment")))


def test_a_folder_before_identities_checks_its_encoder_where_it_now_is(
        tmp_path, tiny_tokenizer, caplog):
    """Its config.json names the encoder relative to the BAM_DIR
    ("./pretrained_models/enc", as docs/results/models do): the encoder
    found there is fingerprinted and compared with the run's, whatever
    path the run gives it."""
    from bam_tf.encoders.encoder import load_encoder
    from bam_tf.store.identity import encoder_fingerprint as fingerprint
    encoder_fingerprint = lambda run: fingerprint(load_encoder(
        run.pretrained_model))
    bam = tmp_path / "bam"

    def preset(folder, seed):
        tiny_backbone(seed=seed).save_to_preset(str(folder))
        tiny_tokenizer.save_to_preset(str(folder))
        return str(folder)
    preset(bam / "pretrained_models" / "enc", seed=0)
    copy = preset(tmp_path / "copy", seed=0)
    other = preset(tmp_path / "other", seed=1)
    config = debug_config(bam, str(tmp_path / "glue"), "m", ["rte"]).replace(
        debug=False, pretrained_model=str(bam / "pretrained_models" / "enc"))
    folder = ModelDir.of(config)
    os.makedirs(folder.path)
    saved = dict(config.to_dict(), bam_dir=".",
                 pretrained_model="./pretrained_models/enc")
    with open(folder.config_path, "w") as f:
        json.dump(saved, f)
    with open(os.path.join(folder.path, "results.json"), "w") as f:
        json.dump({"trials": [{"trial": 1, "seed": 1, "avg": 50.0,
                               "metrics": {"rte": {"score": 50.0}}}]}, f)

    def identity(run):
        return {"experiment": run.section("experiment"),
                "encoder": encoder_fingerprint(run), "data": {},
                "teachers": {}, "init": None}
    elsewhere = config.replace(pretrained_model=copy)
    with pytest.raises(RunError, match="differs in encoder"):
        open_model_dir(config.replace(pretrained_model=other),
                       identity=identity(config.replace(
                           pretrained_model=other)))
    caplog.clear()
    open_model_dir(elsewhere, identity=identity(elsewhere))
    assert "taken as the same encoder" not in caplog.text
    assert folder.read_identity()["encoder"] == encoder_fingerprint(config)


def test_a_lost_identity_is_refused_not_made_anew(tmp_path):
    """identity.json deleted from a folder with finished trials (written
    by a version that keeps runs.json beside it): a new start cannot know
    what those trials were checked against, so it is refused, and the
    folder is left as it was."""
    config = debug_config(tmp_path, str(tmp_path / "glue"), "m", ["rte"])
    identity = {"experiment": config.section("experiment"),
                "encoder": identity_lib.debug_encoder_fingerprint(config),
                "data": {"rte/train": "a"}, "teachers": {}, "init": None}
    folder = open_model_dir(config, identity=identity)
    folder.merge_results([{"trial": 1, "seed": 1, "avg": 50.0,
                           "metrics": {"rte": {"score": 50.0}}}])
    os.remove(folder.identity_path)
    before = {name: open(os.path.join(folder.path, name), "rb").read()
              for name in sorted(os.listdir(folder.path))
              if os.path.isfile(os.path.join(folder.path, name))}
    changed = dict(identity, data={"rte/train": "b"})  # other data now
    with pytest.raises(RunError, match="identity.json is missing, and .* "
                       "holds finished trials \\[1\\]"):
        open_model_dir(config.replace(num_trials=2), identity=changed)
    after = {name: open(os.path.join(folder.path, name), "rb").read()
             for name in sorted(os.listdir(folder.path))
             if os.path.isfile(os.path.join(folder.path, name))}
    assert after == before


def test_a_hand_edited_identity_of_the_wrong_form_is_named(tmp_path):
    """An identity.json whose experiment holds a value of the wrong form
    is an error naming the file, and the folder is left as it was."""
    config = debug_config(tmp_path, str(tmp_path / "glue"), "m", ["rte"])
    identity = {"experiment": config.section("experiment"),
                "encoder": identity_lib.debug_encoder_fingerprint(config),
                "data": {"rte/train": "a"}, "teachers": {}, "init": None}
    folder = open_model_dir(config, identity=identity)
    saved = json.load(open(folder.identity_path))
    saved["experiment"].update(distill=True, teachers=5)
    with open(folder.identity_path, "w") as f:
        json.dump(saved, f)
    before = open(folder.identity_path, "rb").read()
    with pytest.raises(RunError, match="identity.json: a value of the wrong "
                       "form .*; restore the file from a copy"):
        open_model_dir(config, identity=identity)
    assert open(folder.identity_path, "rb").read() == before


@pytest.mark.parametrize("content, message", [
    (b"", "holds no token"), (b"\xff\xfe[PAD]\n", "not UTF-8 text"),
    (None, "cannot read the vocabulary")])
def test_a_damaged_vocabulary_is_named(tmp_path, content, message):
    folder = ModelDir(str(tmp_path), "m")
    os.makedirs(folder.path)
    if content is not None:
        with open(folder.vocab_path, "wb") as f:
            f.write(content)
    with pytest.raises(ModelDirError, match=f"vocab.txt: {message}"):
        folder.read_vocabulary()
