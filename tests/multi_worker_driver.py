"""One worker of a two-worker MultiWorkerMirroredStrategy run on localhost:
trains a tiny model through `run.train_and_evaluate`. Used by
test_distribute.py, which starts both workers, bounds them in time and
compares their model with one trained on one device.

    multi_worker_driver.py BAM_DIR GLUE_DIR INDEX PORTS [NAME] [options]

Options: `overwrite` (train_and_evaluate's), `slow_chief` (the chief
opens the folder five seconds late: a worker reading the folder itself
would read it before the chief has written it),
`other_run` (another learning rate: a folder of the named run refuses
it), `worker_dies` (the non-chief worker kills itself, SIGKILL, after
step 6: a preempted machine), `two_trials`."""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(bam_dir, glue_dir, index, ports, name="multi_worker", *options):
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"localhost:{p}" for p in ports.split(",")]},
        "task": {"type": "worker", "index": int(index)}})
    import tensorflow as tf
    from absl import logging

    from bam_tf.errors import BamError
    from bam_tf.runtime import Runtime
    from bam_tf.experiment import run
    logging.set_verbosity(logging.INFO)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from conftest import distribute_config
    # Packed (one group of rows per worker) against the one-device run
    # padded to max_length: the same batches in another layout.
    config = distribute_config(bam_dir, glue_dir, name).replace(
        padding="packed")
    if "two_trials" in options:
        config = config.replace(num_trials=2)
    if "other_run" in options:
        config = config.replace(learning_rate=config.learning_rate * 2)
    if "slow_chief" in options:
        open_model_dir = run.open_model_dir

        def slow_open(*args, **kwargs):
            time.sleep(5)
            return open_model_dir(*args, **kwargs)

        run.open_model_dir = slow_open
    if "worker_dies" in options and index == "1":
        import keras

        from bam_tf.experiment import trial

        class Dies(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(self.model.optimizer.iterations.numpy()) >= 6:
                    os.kill(os.getpid(), signal.SIGKILL)

        trainer = trial.TrialTrainer
        trial.TrialTrainer = lambda *args, **kwargs: trainer(
            *args, **kwargs, callbacks=[Dies()])
    try:
        run.train_and_evaluate(config, strategy, verbose=0,
                               overwrite="overwrite" in options,
                               runtime=Runtime(save_checkpoints_steps=4))
    except BamError as e:  # as the scripts show it
        print(f"FATAL: {e}", flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main(*sys.argv[1:])
