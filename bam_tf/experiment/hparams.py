"""A trial's hyperparameters and final dev scores for TensorBoard's HParams
dashboard: `tensorboard --logdir BAM_DIR/models` then lists every trial
of every model in one table, sortable and filterable by any setting or
score, beside the curves of its logs/trial_<k>/train and dev runs."""

import json

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

# Where the final scores go: one tag per task and the average, so that
# the dashboard's metric columns are the tasks.
FINAL_TAG = "final/dev_{}"


def trial_hparams(config, trial, seed):
    """The experiment's settings as HParams values (numbers, booleans and
    text; lists and maps as their JSON; unset as "none"), with the model,
    trial and seed."""
    values = {"model_name": config.model_name, "trial": trial, "seed": seed}
    for key, value in config.section("experiment").items():
        if key == "seed":
            continue  # the trial's own seed is above
        if value is None:
            value = "none"
        elif isinstance(value, (list, tuple, dict)):
            value = json.dumps(value, sort_keys=True)
        values[key] = value
    return values


def write_trial_hparams(log_dir, config, trial, seed, scores, avg, step):
    """Writes the session of one finished trial to `log_dir` (its
    logs/trial_<k> folder): its hparams and `FINAL_TAG` scalars at `step`.
    `scores` is {task: {metric: value, "score": value}}."""
    writer = tf.summary.create_file_writer(log_dir)
    try:
        with writer.as_default():
            hp.hparams(trial_hparams(config, trial, seed),
                       trial_id=f"{config.model_name}/trial_{trial}")
            tf.summary.scalar(FINAL_TAG.format("avg"), avg, step=step)
            for task, metrics in scores.items():
                tf.summary.scalar(FINAL_TAG.format(task), metrics["score"],
                                  step=step)
        writer.flush()
    finally:
        writer.close()
