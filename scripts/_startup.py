"""Imported by every script before TensorFlow loads, so that a command's
own output is not buried under TensorFlow's start-up lines.

TensorFlow's C++ INFO and WARNING lines are off (TF_CPP_MIN_LOG_LEVEL=2),
but TensorFlow 2.21 prints some before its logging reads that setting,
and on a machine without an NVIDIA driver it reports the failed CUDA
initialisation as an error (`E0000 ... failed call to cuInit`). While a
script's modules load and its devices are found, the process's stderr
goes to a temporary file; then every line of it is written back except
those start-up lines (a cuInit failure only where no NVIDIA driver is
installed: with one, it is a real error). Errors, warnings from Python and
tracebacks are all written back.
"""

import atexit
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# C++ INFO/WARNING lines (I0000 00:00:1796195140.250004  11270 port.cc:153]
# ...), which TF_CPP_MIN_LOG_LEVEL=2 is meant to hide, and what comes with
# them. Python's absl lines name a .py file and are kept.
_NOISE = re.compile(
    r"^(?:[IW]\d{4} [\d:.]+ +\d+ [\w./-]+\.cc:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called "
    r"are written to STDERR"
    r"|To enable the following instructions: .* in other operations, "
    r"rebuild TensorFlow with the appropriate compiler flags\.$)")
# Errors that only say there is no GPU, where the machine has no driver.
_NO_GPU = re.compile(
    r"^E\d{4} [\d:.]+ +\d+ [\w./-]+\.cc:\d+\] (?:failed call to cuInit"
    r"|Unable to register cu(?:DNN|FFT|BLAS) factory)")


def _has_nvidia_driver():
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists(
        "/dev/nvidia0")


class _StartupFilter:
    """Holds fd 2 in a temporary file until `release`."""

    def __init__(self):
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        self._drop_no_gpu = not _has_nvidia_driver()
        atexit.register(self.release)  # an import error, a sys.exit

    def _kept(self, line):
        text = line.decode("utf-8", "replace")
        if _NOISE.match(text):
            return False
        return not (self._drop_no_gpu and _NO_GPU.match(text))

    def release(self):
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        self._file.seek(0)
        for line in self._file:
            if self._kept(line):
                os.write(2, line)
        self._file.close()


def _is_main_program():
    """Whether this process runs one of the scripts (or its console
    command), not a program that imports them, such as pytest."""
    name = os.path.basename(sys.argv[0] if sys.argv else "")
    here = os.path.dirname(os.path.abspath(__file__))
    return name.startswith("bam-") or (
        name.endswith(".py") and os.path.isfile(os.path.join(here, name)))


_filter = _StartupFilter() if _is_main_program() else None


def import_tensorflow(*also):
    """TensorFlow (and the modules named in `also`), imported with its
    start-up lines filtered as at a script's start: for a script that
    loads it only once its flags and inputs are checked."""
    import importlib

    held = _StartupFilter() if _filter is not None else None
    try:
        tf = importlib.import_module("tensorflow")
        for name in also:
            importlib.import_module(name)
        tf.config.list_physical_devices()  # finding the devices prints too
    finally:
        if held is not None:
            held.release()
    return tf


def _raise_interrupted(signum, frame):
    from bam_tf.errors import Interrupted
    raise Interrupted(signum)


def _guarded(main):
    """`main` whose faults end the process with one line on stderr and a
    status that says why: a usage error gives its reason and a short
    usage line (status 1); an operating-system fault (permission, a
    read-only or full disk, a file where a folder belongs) exits 1 naming
    the path; Ctrl-C exits 130 and SIGTERM 143 (128 + the signal, as a
    shell reports a killed job), each saying how to resume. Written files
    are kept: results and checkpoints are written atomically, so the last
    ones stay whole."""
    import signal

    from absl import app

    from bam_tf.errors import Interrupted
    from bam_tf.errors import os_fault_message

    def guarded(argv):
        signal.signal(signal.SIGTERM, _raise_interrupted)
        try:
            return main(argv)
        except app.UsageError as e:
            # absl would print the whole module docstring first and bury
            # the reason under it.
            name = os.path.basename(sys.argv[0])
            sys.stderr.write(f"error: {e}\nusage: {name} [flags]; "
                             f"{name} --helpshort lists its flags.\n")
            sys.exit(e.exitcode)
        except (KeyboardInterrupt, Interrupted) as e:
            signum = (e.args[0] if isinstance(e, Interrupted)
                      else signal.SIGINT)
            name = signal.Signals(signum).name
            sys.stderr.write(
                f"interrupted ({name}): every finished trial and the last "
                "checkpoint are kept; run the same command again to resume."
                "\n")
            sys.exit(128 + signum)
        except Exception as e:  # noqa: BLE001 (only faults are caught)
            message = os_fault_message(e)
            if message is None:
                raise
            sys.exit(f"error: {message}")
    return guarded


def run(main, module_name):
    """`app.run(main)` for the script `module_name`, its flags listed by
    --help also when it runs as a console command (whose main module is
    pip's wrapper, not the script); faults and interruptions end it with
    one line (`_guarded`)."""
    from absl import app
    from absl import flags

    if _filter is not None:
        if "tensorflow" in sys.modules:  # finding the devices prints too
            sys.modules["tensorflow"].config.list_physical_devices()
        _filter.release()
    for flag in flags.FLAGS.get_key_flags_for_module(
            sys.modules[module_name]):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(_guarded(main))
