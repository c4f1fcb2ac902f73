"""The installed package: a console command per script, working from any
folder, listing its own flags."""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess

import pytest

from conftest import REPO

SCRIPTS = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "scripts"))
                 if f.endswith(".py") and not f.startswith("_"))


def _commands():
    return {e.name: e.value for e in importlib.metadata.entry_points(
        group="console_scripts") if e.value.startswith("bam_tf_scripts.")}


def test_every_script_is_a_command():
    commands = _commands()
    assert sorted(commands) == sorted(
        "bam-" + s.replace("_", "-") for s in SCRIPTS)
    for name, target in commands.items():
        module, function = target.split(":")
        script = module.split(".")[1]
        assert name == "bam-" + script.replace("_", "-")
        # Found, not imported: the scripts define flags at import.
        spec = importlib.util.find_spec(module)
        assert os.path.samefile(spec.origin,
                                os.path.join(REPO, "scripts", script + ".py"))
        with open(spec.origin, encoding="utf-8") as f:
            assert f"\ndef {function}():" in f.read()


@pytest.mark.parametrize("command, flag", [("bam-report", "--model_names"),
                                           ("bam-born-again", "--recipe"),
                                           ("bam-run-classifier",
                                            "--task_names")])
def test_command_runs_from_any_folder_and_lists_its_flags(tmp_path, command,
                                                          flag):
    path = shutil.which(command)
    assert path, f"{command} is not installed: pip install -e ."
    result = subprocess.run([path, "--helpshort"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert flag + ":" in result.stdout, result.stdout[-2000:]
