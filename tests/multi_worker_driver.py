"""One worker of a two-worker MultiWorkerMirroredStrategy run on localhost:
trains a tiny model through `run.train_and_evaluate`. Used by
test_distribute.py, which starts both workers, bounds them in time and
compares their model with one trained on one device."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(bam_dir, glue_dir, index, ports):
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"localhost:{p}" for p in ports.split(",")]},
        "task": {"type": "worker", "index": int(index)}})
    import tensorflow as tf
    from absl import logging

    from bam_tf.runtime import Runtime
    from bam_tf.experiment import run
    logging.set_verbosity(logging.INFO)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from conftest import distribute_config
    # Packed (one group of rows per worker) against the one-device run
    # padded to max_length: the same batches in another layout.
    config = distribute_config(bam_dir, glue_dir, "multi_worker").replace(
        padding="packed")
    run.train_and_evaluate(config, strategy, verbose=0,
                           runtime=Runtime(save_checkpoints_steps=4))


if __name__ == "__main__":
    main(*sys.argv[1:])
