"""Imported by every script before TensorFlow loads: TensorFlow's C++
INFO and WARNING lines stay off the terminal (its errors still show)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(main, module_name):
    """`app.run(main)` for the script `module_name`, its flags listed by
    --help also when it runs as a console command (whose main module is
    pip's wrapper, not the script)."""
    import sys

    from absl import app
    from absl import flags

    for flag in flags.FLAGS.get_key_flags_for_module(
            sys.modules[module_name]):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main)
