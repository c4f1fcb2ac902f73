"""The installed package: a console command per script, working from any
folder, listing its own flags."""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO

SCRIPTS = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "scripts"))
                 if f.endswith(".py") and not f.startswith("_"))


def _commands():
    return {e.name: e.value for e in importlib.metadata.entry_points(
        group="console_scripts") if e.value.startswith("bam_tf_scripts.")}


def test_every_package_of_the_library_is_installed():
    """`pip install .` installs the packages pyproject.toml lists, no
    others: a folder of the library left out would be missing from every
    non-editable install."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    folders = {os.path.relpath(root, REPO).replace(os.sep, ".")
               for root, _, files in os.walk(os.path.join(REPO, "bam_tf"))
               if any(f.endswith(".py") for f in files)}
    assert folders <= listed, sorted(folders - listed)
    assert all(os.path.isfile(os.path.join(
        REPO, *name.split("."), "__init__.py")) for name in folders)


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


_FILTER_PROGRAM = r"""
import os, sys
sys.argv[0] = "bam-probe"
from bam_tf_scripts import _startup
for line in (
        "WARNING: All log messages before absl::InitializeLog() is called "
        "are written to STDERR",
        "I0000 00:00:1796195140.250004   11270 port.cc:153] oneDNN custom "
        "operations are on.",
        "W0000 00:00:1796195140.250344   11270 cudart_stub.cc:31] Could not "
        "find cuda drivers on your machine, GPU will not be used.",
        "To enable the following instructions: AVX2 FMA, in other "
        "operations, rebuild TensorFlow with the appropriate compiler flags.",
        "E0000 00:00:1796195148.433491   11270 cuda_platform.cc:52] failed "
        "call to cuInit: INTERNAL: CUDA error",
        "E0000 00:00:1796195148.433491   11270 op_kernel.cc:1] a real error",
        "W1202 07:05:54.553923 140373156739968 trial.py:63] ours, kept"):
    os.write(2, (line + "\n").encode())
print("python's own stderr", file=sys.stderr)
_startup._filter.release()
os.write(2, b"after\n")
"""


def test_startup_filter_drops_tensorflows_start_up_lines_only():
    result = subprocess.run([sys.executable, "-c", _FILTER_PROGRAM],
                            capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    kept = result.stderr.splitlines()
    no_driver = not (os.path.exists("/proc/driver/nvidia/version")
                     or os.path.exists("/dev/nvidia0"))
    # A cuInit failure is only noise where no NVIDIA driver is installed.
    assert kept == (
        [] if no_driver else [
            "E0000 00:00:1796195148.433491   11270 cuda_platform.cc:52] "
            "failed call to cuInit: INTERNAL: CUDA error"]) + [
        "E0000 00:00:1796195148.433491   11270 op_kernel.cc:1] a real error",
        "W1202 07:05:54.553923 140373156739968 trial.py:63] ours, kept",
        "python's own stderr", "after"]


def test_a_command_starts_without_tensorflows_start_up_lines():
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "run_classifier.py"),
         "--model_name=m", "--bam_dir=/nonexistent/bam", "--task_names=qqq",
         "--debug"], capture_output=True, text=True, timeout=300)
    assert "absl::InitializeLog" not in result.stderr
    assert "I0000" not in result.stderr and "port.cc" not in result.stderr
    if not os.path.exists("/dev/nvidia0"):
        assert "cuInit" not in result.stderr
    # The user's mistake still reaches the terminal, first.
    assert result.returncode == 1
    assert result.stderr.startswith("error: "), result.stderr[:2000]
