import dataclasses
import json
import os
import subprocess
import sys

import pytest

from bam_tf.config import PRESETS
from bam_tf.config import ConfigError
from bam_tf.config import RunConfig
from bam_tf_flags.parsers import parse_trials

from conftest import REPO

BASE = {"model_name": "m", "bam_dir": "/tmp/b", "task_names": ["rte", "mrpc"],
        "debug": True}


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match=r"Unknown configuration keys \['lr'\]"):
        RunConfig.from_dict({**BASE, "lr": 1e-4})


def test_json_round_trip_and_frozen(tmp_path):
    config = RunConfig.from_dict(
        {**BASE, "distill": True, "teachers": {"rte": "t1", "mrpc": "t2"},
         "teacher_trials": [1, 2]})
    assert config.task_names == ("rte", "mrpc")
    assert dict(config.teachers) == {"rte": "t1", "mrpc": "t2"}
    assert config.teacher_trials == (1, 2)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert RunConfig.from_json(str(path)) == config
    with pytest.raises(Exception):
        config.learning_rate = 1.0


@pytest.mark.parametrize("changes, message", [
    ({"debug": False}, "Give --pretrained_model"),
    ({"pretrained_model": "x"}, "contradicts"),
    ({"teachers": {"rte": "t"}}, "without --distill"),
    ({"distill": True}, "needs --teachers"),
    ({"distill": True, "teachers": {"qqp": "t"}}, "not in --task_names"),
    ({"distill": True, "teachers": {"rte": "m"}}, "its own teacher"),
    ({"task_names": ["rte", "rte"]}, "duplicates"),
    ({"lr_decay": 0.0}, "lr_decay"),
    # Python's file operations would write a local folder "gs:".
    ({"bam_dir": "gs://bucket/bam"},
     r"^--bam_dir=gs://bucket/bam is a URL \(gs://\), which bam-tf "
     "cannot use"),
    ({"glue_dir": "s3://bucket/glue"}, r"--glue_dir=s3://bucket/glue is a "
     r"URL \(s3://\).*local folder named s3:"),
    ({"data_source": "csv"}, "data_source"),
    ({"task_loss_weights": {"cola": 2}}, r"names tasks \['cola'\]"),
    ({"task_loss_weights": {"rte": 0}}, "finite and > 0"),
    ({"task_loss_weights": {"rte": "nan"}}, "finite and > 0"),
    ({"task_loss_weights": {"rte": "heavy"}}, "map tasks to numbers"),
    # Hand-edited config.json values: errors, not a crash in unpacking.
    ({"task_loss_weights": ["rte"]}, "map tasks to numbers"),
    ({"distill": True, "teachers": ["rte"]}, "map tasks to model names"),
    ({"distill": True, "teachers": {"rte": None}}, "map tasks to model names"),
    ({"teacher_trials": [1, "two"]}, "teacher_trials must be a list of trial"),
    # Text is the command line's, parsed by its flags: never split here.
    ({"task_names": "rte,mrpc"}, "task_names must be a list of task names"),
    ({"teacher_trials": "1,2"}, "teacher_trials must be a list of trial"),
    ({"distill": True, "teachers": "rte:t"}, "map tasks to model names"),
])
def test_contradictory_values_are_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict({**BASE, **changes})


def test_bad_config_json_errors_name_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_name": "m",\n "learning_rate": }')
    with pytest.raises(ConfigError, match=r"config.json is not valid JSON: "
                                          r".*line 2"):
        RunConfig.from_json(str(path))
    path.write_text("[1]")
    with pytest.raises(ConfigError, match="config.json: expected a JSON "
                                          "object.*got list"):
        RunConfig.from_json(str(path))
    path.write_text(json.dumps({**BASE, "lr_decay": 0.0}))
    with pytest.raises(ConfigError, match="config.json: .*lr_decay"):
        RunConfig.from_json(str(path))


def test_task_loss_weights_round_trip_and_default(tmp_path):
    config = RunConfig.from_dict({**BASE, "task_loss_weights": {
        "rte": 0.5, "mrpc": 4}})
    assert config.task_loss_weights == (("mrpc", 4.0), ("rte", 0.5))
    assert (config.loss_weight("rte"), config.loss_weight("mrpc")) == (0.5, 4)
    assert config.to_dict()["task_loss_weights"] == {"mrpc": 4.0, "rte": 0.5}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert RunConfig.from_json(str(path)) == config
    plain = RunConfig.from_dict(BASE)
    assert plain.task_loss_weights == () and plain.loss_weight("rte") == 1.0


def test_structured_flags_parse_to_the_config_json_forms():
    assert _parsed("--task_names=rte,mrpc", "--teacher_trials=1-3",
                   "--task_loss_weights=mrpc:4,rte:.5",
                   "--teachers=rte:t1, mrpc:t2") == {
        "task_names": ["rte", "mrpc"], "teacher_trials": (1, 2, 3),
        "task_loss_weights": {"mrpc": 4.0, "rte": 0.5},
        "teachers": {"rte": "t1", "mrpc": "t2"}}
    config = RunConfig.from_dict({**BASE, "distill": True, **_parsed(
        "--task_names=rte,mrpc", "--teachers=rte:t1,mrpc:t2",
        "--teacher_trials=1,2")})
    assert config.teachers == (("mrpc", "t2"), ("rte", "t1"))
    assert config.teacher_trials == (1, 2)


@pytest.mark.parametrize("argv, message", [
    ("--task_loss_weights=rte", r"--task_loss_weights=rte: entry 'rte' is "
                                r"not of the form task:number"),
    ("--task_loss_weights=rte:x", "not of the form task:number"),
    ("--task_loss_weights=rte:1,rte:2", "names task 'rte' twice"),
    ("--teachers=rte", r"--teachers=rte: entry 'rte' is not of the form "
                       r"task:model"),
    ("--teachers=:m", "not of the form task:model"),
    ("--teachers=rte:a,rte:b", "twice"),
    ("--teacher_trials=1,two", "'two' is not a trial number"),
    ("--trials=0", "numbered from 1"),
])
def test_structured_flag_errors_name_the_flag_and_entry(argv, message):
    from absl import flags
    with pytest.raises(flags.IllegalFlagValueError, match=message):
        _parsed(argv)


def test_trials_beyond_an_explicit_num_trials_are_refused():
    from absl import flags
    with pytest.raises(flags.IllegalFlagValueError,
                       match="--trials goes past --num_trials"):
        _parsed("--num_trials=2", "--trials=3")
    # Within it, or --trials alone (which grows the folder): accepted.
    assert _parsed("--num_trials=3", "--trials=2,3")["num_trials"] == 3
    assert "num_trials" not in _parsed("--trials=3")


def _parsed(*argv):
    from absl import flags
    from bam_tf_flags import bam_flags
    flag_values = flags.FlagValues()
    bam_flags.define_flags(flag_values)
    flag_values(["prog", *argv])
    return bam_flags.config_values(flag_values)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_flagfiles_name_their_preset_and_hold_no_copy(name):
    path = os.path.join(REPO, "flags", name + ".cfg")
    with open(path) as f:
        lines = [line.strip() for line in f
                 if line.strip() and not line.startswith("#")]
    assert lines == [f"--preset={name}"]
    assert _parsed(f"--flagfile={path}") == PRESETS[name]


def test_a_typed_flag_beats_a_preset_whatever_the_order():
    cfg = os.path.join(REPO, "flags", "single_task.cfg")
    for argv in (["--num_train_epochs=1", f"--flagfile={cfg}"],
                 [f"--flagfile={cfg}", "--num_train_epochs=1"],
                 ["--num_train_epochs=1", "--preset=single_task"]):
        assert _parsed(*argv) == {**PRESETS["single_task"],
                                  "num_train_epochs": 1.0}, argv
    # Presets apply in order, each under the typed flags.
    assert _parsed("--preset=multi_task", "--preset=debug",
                   "--learning_rate=0.5") == {
        **PRESETS["multi_task"], **PRESETS["debug"], "learning_rate": 0.5}


def test_help_lists_the_run_flags_with_their_defaults():
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "run_classifier.py"),
         "--help"], capture_output=True, text=True, timeout=300)
    text = " ".join(result.stdout.split())  # (absl's --help exits 1)
    assert "--learning_rate: Peak learning rate of the top layer" in text
    assert ("Default: 0.0001 (--preset: debug 0.001, multi_task 0.0001, "
            "single_task 5e-05, single_task_finetune 1e-05)") in text
    assert "--model_name: Folder under BAM_DIR/models" in text
    assert "--trials: Run only these trial numbers" in text
    for field in dataclasses.fields(RunConfig):  # every field, real text
        assert f"--{field.name}: " in text or (
            f"--[no]{field.name}: " in text), field.name


def test_paper_hyperparameters():
    assert PRESETS["single_task"]["train_batch_size"] == 32
    assert PRESETS["single_task"]["learning_rate"] == 5e-5
    assert PRESETS["multi_task"]["train_batch_size"] == 128
    assert PRESETS["multi_task"]["num_train_epochs"] == 6.0
    assert PRESETS["multi_task"]["lr_decay"] == 0.9


@pytest.mark.parametrize("text, trials", [
    ("3", (3,)), ("4,5", (4, 5)), ("1-3,7", (1, 2, 3, 7)), ("2,2", (2,))])
def test_parse_trials(text, trials):
    assert parse_trials(text) == trials


@pytest.mark.parametrize("text, message", [
    ("0", "numbered from 1"), ("3-1", "ranges go upwards"),
    ("a", "'a' is not a trial number"), (",", "names no trial")])
def test_parse_trials_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_trials(text)


def test_missing_required_settings_are_named():
    with pytest.raises(ConfigError, match="^bam_dir, task_names are "
                       "required.$"):
        RunConfig.from_dict({"model_name": "m", "debug": True})
    with pytest.raises(ConfigError, match="^task_names is required.$"):
        RunConfig.from_dict({"model_name": "m", "bam_dir": "/b",
                             "debug": True})
