"""Runs a tiny training in a subprocess and, by the mode given, kills itself
with SIGKILL at one exact point: right after the first mid-training
checkpoint, right after the first trial's results are written, or in the
middle of writing the second trial's outputs. Or right after the second checkpoint (for a test that damages it). Used
by test_resume.py."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from bam_tf.runtime import Runtime  # noqa: E402
from bam_tf.store import outputs as outputs_lib  # noqa: E402
from bam_tf.experiment import run  # noqa: E402
from bam_tf.store.model_dir import ModelDir  # noqa: E402
from conftest import debug_config  # noqa: E402


def kill():
    os.kill(os.getpid(), signal.SIGKILL)


def main(bam_dir, glue_dir, mode):
    logging.set_verbosity(logging.INFO)
    if mode in ("after_checkpoint", "after_second_checkpoint"):
        save = tf.train.CheckpointManager.save
        saved = []

        def save_then_die(self, checkpoint_number=None, **kwargs):
            path = save(self, checkpoint_number=checkpoint_number, **kwargs)
            saved.append(path)
            if mode == "after_checkpoint" or len(saved) == 2:
                kill()
            return path
        tf.train.CheckpointManager.save = save_then_die
    elif mode == "between_trials":
        merge = ModelDir.merge_results

        def merge_then_die(self, records):
            results = merge(self, records)
            if len(results["trials"]) == 1:
                kill()
            return results
        ModelDir.merge_results = merge_then_die
    elif mode == "during_outputs":
        write = outputs_lib.write_predictions

        def write_some_then_die(path, *args):
            write(path, *args)
            if "_2.npz" in path:
                kill()
        outputs_lib.write_predictions = write_some_then_die
    config = debug_config(bam_dir, glue_dir, "resume", ["rte", "sts"],
                          num_trials=2, num_train_epochs=3,
                          padding="max_length")
    run.train_and_evaluate(
        config, verbose=0,
        runtime=Runtime(save_checkpoints_steps=5))


if __name__ == "__main__":
    main(*sys.argv[1:])
