import dataclasses
import json
import os
import subprocess
import sys

import pytest

from bam_tf.config import PRESETS
from bam_tf.config import ConfigError
from bam_tf.config import RunConfig
from bam_tf.config import parse_task_loss_weights
from bam_tf.config import parse_teachers

from conftest import REPO

BASE = {"model_name": "m", "bam_dir": "/tmp/b", "task_names": "rte,mrpc",
        "debug": True}


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match=r"Unknown configuration keys \['lr'\]"):
        RunConfig.from_dict({**BASE, "lr": 1e-4})


def test_json_round_trip_and_frozen(tmp_path):
    config = RunConfig.from_dict(
        {**BASE, "distill": True, "teachers": "rte:t1,mrpc:t2",
         "teacher_trials": "1,2"})
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
    ({"teachers": "rte:t"}, "without --distill"),
    ({"distill": True}, "needs --teachers"),
    ({"distill": True, "teachers": "qqp:t"}, "not in --task_names"),
    ({"distill": True, "teachers": "rte:m"}, "its own teacher"),
    ({"task_names": "rte,rte"}, "duplicates"),
    ({"lr_decay": 0.0}, "lr_decay"),
    ({"data_source": "csv"}, "data_source"),
    ({"task_loss_weights": "cola:2"}, r"names tasks \['cola'\]"),
    ({"task_loss_weights": "rte:0"}, "finite and > 0"),
    ({"task_loss_weights": "rte:nan"}, "finite and > 0"),
    ({"task_loss_weights": {"rte": "heavy"}}, "map tasks to numbers"),
    # Hand-edited config.json values: errors, not a crash in unpacking.
    ({"task_loss_weights": ["rte"]}, "map tasks to numbers"),
    ({"distill": True, "teachers": ["rte"]}, "map tasks to model names"),
    ({"distill": True, "teachers": {"rte": None}}, "map tasks to model names"),
    ({"teacher_trials": "1,two"}, "teacher_trials must be trial numbers"),
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


def test_task_loss_weights_parse_round_trip_and_default(tmp_path):
    config = RunConfig.from_dict({**BASE, "task_loss_weights": "mrpc:4,rte:.5"})
    assert config.task_loss_weights == (("mrpc", 4.0), ("rte", 0.5))
    assert (config.loss_weight("rte"), config.loss_weight("mrpc")) == (0.5, 4)
    assert config.to_dict()["task_loss_weights"] == {"mrpc": 4.0, "rte": 0.5}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert RunConfig.from_json(str(path)) == config
    plain = RunConfig.from_dict(BASE)
    assert plain.task_loss_weights == () and plain.loss_weight("rte") == 1.0
    for bad, message in (("rte", "task:number"), ("rte:x", "task:number"),
                         ("rte:1,rte:2", "twice")):
        with pytest.raises(ConfigError, match=message):
            parse_task_loss_weights(bad)


def test_teacher_parsing_errors():
    with pytest.raises(ConfigError, match="task:model"):
        parse_teachers("rte")
    with pytest.raises(ConfigError, match="twice"):
        parse_teachers("rte:a,rte:b")


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
