"""The public API (`import bam_tf`) and the one declaration of each
setting: the names a notebook needs, their docstring examples, README's
Python block run end to end, and the flags and identity rules made from
the declarations."""

import dataclasses
import doctest
import os
import re
import subprocess
import sys

import pytest
from absl import flags

import bam_tf
from bam_tf import config as config_lib
from bam_tf.runtime import Runtime
from bam_tf.store import identity as identity_lib

from conftest import REPO

# Constants carry no docstring of their own: the module's says what they
# are.
_CONSTANTS = {"PRESETS", "RECIPES"}


def test_import_bam_tf_loads_no_tensorflow_until_a_name_is_used():
    code = ("import sys, bam_tf; assert 'tensorflow' not in sys.modules; "
            "bam_tf.RunConfig; assert 'tensorflow' not in sys.modules; "
            "print(sorted(bam_tf.__all__) == sorted(dir(bam_tf)) or "
            "set(bam_tf.__all__) <= set(dir(bam_tf)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"


def test_every_public_name_resolves_and_shows_an_example():
    for name in bam_tf.__all__:
        value = getattr(bam_tf, name)
        if name in _CONSTANTS:
            continue
        assert "Example" in (value.__doc__ or ""), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bam_tf.nope  # noqa: B018


def test_docstring_examples_run():
    """Every `>>>` example of a public name runs as written, with its own
    module's names alone, as `python -m doctest` runs it (the ones that
    train are in fenced blocks; README's runs below)."""
    finder, ran = doctest.DocTestFinder(recurse=False), 0
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for name in bam_tf.__all__:
        value = getattr(bam_tf, name)
        if name in _CONSTANTS:
            continue
        module = sys.modules[value.__module__]
        for test in finder.find(value, name, globs=dict(vars(module))):
            runner.run(test)
            ran += len(test.examples)
    assert runner.summarize(verbose=False).failed == 0
    assert ran >= 10


def test_readme_python_block_trains_and_reports(tiny_glue, tmp_path,
                                                monkeypatch):
    """README's "From Python" block, run as written in a folder where
    `bam/glue_data` is the tiny GLUE data."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split("## From Python", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    (tmp_path / "bam").mkdir()
    os.symlink(tiny_glue, tmp_path / "bam" / "glue_data")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    [trial] = namespace["results"]["trials"]
    assert trial["trial"] == 1 and 0 <= trial["avg"] <= 100
    folder = bam_tf.ModelDir("bam", "rte-debug")
    assert folder.read_results() == namespace["results"]


# ------------------------------------------------ settings declared once
def test_every_setting_is_declared_with_a_section_and_help():
    for cls in (config_lib.RunConfig, Runtime):
        for field in dataclasses.fields(cls):
            assert field.metadata["help"].endswith((".", ")")), field.name
            expected = "runtime" if cls is Runtime else None
            assert (field.metadata["section"] == expected if expected
                    else field.metadata["section"] != "runtime"), field.name
    every = {f.name for f in dataclasses.fields(config_lib.RunConfig)}
    sections = [n for names in config_lib.SECTIONS.values() for n in names]
    assert sorted(sections) == sorted(every)
    # A switch's settings belong to the experiment, as the switch does.
    for switch, names in config_lib.INERT_UNLESS.items():
        assert {switch, *names} <= set(config_lib.SECTIONS["experiment"])


def test_flags_and_help_come_from_the_declarations():
    from bam_tf_flags import bam_flags
    values = flags.FlagValues()
    bam_flags.define_flags(values)
    for cls in (config_lib.RunConfig, Runtime):
        for field in dataclasses.fields(cls):
            flag = values[field.name]
            assert field.metadata["help"][:40] in flag.help, \
                field.name
            assert flag.default is None  # unset: the declared default
    values(["prog", "--heartbeat_secs=5", "--claim_timeout_secs=11",
            "--strategy=mirrored", "--trials=2-3"])
    assert bam_flags.runtime(values) == Runtime(
        heartbeat_secs=5.0, claim_timeout_secs=11.0, strategy="mirrored",
        trials=(2, 3))
    unset = flags.FlagValues()
    bam_flags.define_flags(unset)
    unset(["prog"])
    assert bam_flags.runtime(unset) == Runtime()


def test_identity_ignores_exactly_the_declared_inert_settings():
    """Flipping a setting of a switched-off feature changes no identity;
    with the switch on, every one of them does."""
    base = config_lib.RunConfig(model_name="m", bam_dir="/b",
                                task_names=("rte",), debug=True)
    on = {"distill": dict(distill=True, teachers=(("rte", "t"),)),
          "init_from_model": dict(init_from_model="src"),
          "debug": {}}
    changed = {"teachers": (("rte", "other"),), "teacher_trials": (2,),
               "teacher_annealing": False, "distill_weight": 0.3,
               "distill_temperature": 2.0, "init_from_trial": 2,
               "debug_hidden_size": 16, "debug_num_layers": 1,
               "debug_vocab_size": 50}
    read = lambda c: identity_lib.experiment_as_read_now(
        c.section("experiment"))
    for switch, names in config_lib.INERT_UNLESS.items():
        for name in names:
            if switch != "debug":  # a debug-less run needs an encoder
                off = dataclasses.replace(base, **{name: changed[name]})
                assert read(off) == read(base), name
            started = dataclasses.replace(base, **on[switch])
            assert read(dataclasses.replace(
                started, **{name: changed[name]})) != read(started), name


def test_a_command_line_carries_every_setting_to_the_run(tmp_path):
    """A configuration with every setting away from its default, printed
    as a command line (`command_line`, as born_again.py --print_commands
    does) and parsed back by the flags, is the same configuration: no
    setting is dropped between the command line and the run."""
    import shlex
    from bam_tf_flags import bam_flags
    changed = dict(
        glue_dir=str(tmp_path / "glue"), data_source="tfds", debug=True,
        debug_hidden_size=16, debug_num_layers=1, debug_vocab_size=50,
        max_seq_length=40, padding="buckets", mixed_precision="mixed_bfloat16",
        train_batch_size=24, eval_batch_size=48, learning_rate=2e-5,
        lr_decay=0.8, num_train_epochs=2.5, warmup_proportion=0.2,
        weight_decay_rate=0.02, clip_norm=2.0, dropout_rate=0.2,
        task_weight_exponent=0.5, task_loss_weights={"sts": 4.0},
        double_unordered=False, max_train_examples=100, distill=True,
        teachers={"rte": "t-rte", "sts": "t-sts"}, teacher_trials=[1, 2],
        teacher_annealing=False, distill_weight=0.3, distill_temperature=2.0,
        init_from_model="start", init_from_trial=2, num_trials=3, seed=7,
        n_writes_distill=1, n_writes_test=2, eval_each_epoch=False,
        cache_features=False)
    config = config_lib.RunConfig.from_dict(
        {"model_name": "m", "bam_dir": str(tmp_path),
         "task_names": ["rte", "sts"], **changed})
    defaults = config_lib.RunConfig(model_name="m", bam_dir=str(tmp_path),
                                    task_names=("rte", "sts"), debug=True)
    for name in changed:  # each one really is away from its default
        if name != "debug":
            assert getattr(config, name) != getattr(defaults, name), name
    runtime = Runtime(strategy="mirrored", save_checkpoints_steps=50,
                      save_checkpoints_secs=60.0, jit_compile=True,
                      micro_batch_size=8, steps_per_execution=4,
                      claim_timeout_secs=120.0, heartbeat_secs=10.0)
    words = shlex.split(bam_flags.command_line(config, runtime, trial=2))
    values = flags.FlagValues()
    bam_flags.define_flags(values)
    values(["prog", *words[2:]])
    assert config_lib.RunConfig.from_dict(
        bam_flags.config_values(values)) == config
    assert bam_flags.runtime(values) == dataclasses.replace(runtime,
                                                            trials=(2,))
