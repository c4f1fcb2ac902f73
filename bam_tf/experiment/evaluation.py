"""A trained model's predictions on a run's splits, their scores, and the
files they are written to; `Evaluator` does all three for one trial."""

import weakref

import numpy as np
import tensorflow as tf

from bam_tf.data import pipeline
from bam_tf.distribute import is_multi_worker
from bam_tf.store import outputs as outputs_lib
from bam_tf.tasks import scoring


def predict_split(model, task, task_id, features, batching, batch_size,
                  label_slots):
    """(eids, outputs) of one split: logits, or regression predictions on
    the label scale; padding examples dropped. `batching`: the run's
    `Batching`; packed batches have one group per replica."""
    groups = model.distribute_strategy.num_replicas_in_sync
    if is_multi_worker(model.distribute_strategy):
        groups = 1  # the chief predicts alone (`_predict`)
    # Each replica takes whole groups: the batch splits evenly (its size
    # changes no output).
    batch_size = -(-batch_size // groups) * groups
    dataset = pipeline.eval_dataset(task, task_id, features, batch_size,
                                    label_slots, batching, groups)
    result = _predict(model, dataset)
    real = result["is_real"] > 0
    outputs = np.asarray(result["outputs"][task.name])[real]
    if task.is_regression:
        outputs = task.unscale(outputs)
    return result["eid"][real].astype(np.int64), outputs


_LOCAL_PREDICT = weakref.WeakKeyDictionary()


def _predict(model, dataset):
    if not is_multi_worker(model.distribute_strategy):
        return model.predict(dataset, verbose=0)
    # Under MultiWorkerMirroredStrategy model.predict makes every worker
    # take part in each batch; the chief predicts alone instead, reading its
    # copy of the (synchronised) weights.
    if model not in _LOCAL_PREDICT:
        _LOCAL_PREDICT[model] = tf.function(model.predict_step,
                                            reduce_retracing=True)
    parts = [_LOCAL_PREDICT[model](batch) for batch in dataset]
    return tf.nest.map_structure(
        lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *parts)


def predict_splits(model, inputs, splits, batching, batch_size):
    """{(task, split): (eids, outputs)} for the given (task_id, split)s of
    `inputs` (a `RunInputs`), in `batching`'s layout."""
    slots = pipeline.num_label_slots(inputs.tasks)
    predictions = {}
    for task_id, split in splits:
        task = inputs.tasks[task_id]
        _, features = inputs.split(task_id, split)
        predictions[(task.name, split)] = predict_split(
            model, task, task_id, features, batching, batch_size, slots)
    return predictions


def evaluate(model, inputs, predictions):
    """({task: metrics} over each task's dev split(s), the average), from
    `predictions` (of `predict_splits`) of the dev splits."""
    scores = {}
    for task_id, split in inputs.dev_splits():
        task = inputs.tasks[task_id]
        _, features = inputs.split(task_id, split)
        eids, outputs = predictions[(task.name, split)]
        # Both sides sorted by example id line up row for row.
        metrics = scoring.score_split(
            task, features.labels[np.argsort(features.eids)],
            outputs[np.argsort(eids)])
        if split == task.dev_splits[0]:
            scores[task.name] = metrics
        else:  # MNLI mismatched: beside matched, not in the average
            scores[task.name].update(
                {f"{k}_{split}": v for k, v in metrics.items()})
    return scores, scoring.glue_average(scores, inputs.tasks)


def output_splits(inputs, trial, n_writes_distill, n_writes_test):
    """[(task_id, split)] trial `trial` writes predictions of: train for
    the first `n_writes_distill` trials (the targets of later students),
    dev and test for the first `n_writes_test`."""
    splits = []
    if trial <= n_writes_distill:
        splits += [(i, "train") for i in range(len(inputs.tasks))]
    if trial <= n_writes_test:
        splits += inputs.eval_splits()
    return sorted(splits, key=lambda s: s[0])


def write_outputs(inputs, folder, trial, predictions, splits):
    """Prediction files and GLUE submission files of `splits`, in
    `folder` (a `ModelDir`)."""
    for task_id, split in splits:
        task = inputs.tasks[task_id]
        examples, _ = inputs.split(task_id, split)
        eids, outputs = predictions[(task.name, split)]
        outputs_lib.write_predictions(
            folder.predictions_path(task.name, split, trial),
            task, examples, eids, outputs)
        if split in task.submission_files:
            outputs_lib.write_glue_submission(
                folder.glue_submission_path(
                    trial, task.submission_files[split]),
                task, eids, outputs)


class Evaluator:
    """One trial's evaluation: `model`'s predictions on the splits of
    `inputs` (a `RunInputs`) in `batching`'s layout, batches of
    `batch_size`, scored on the dev splits and written to a model folder.

    Example:

    ```python
    evaluator = Evaluator(model, inputs, batching, batch_size=32)
    scores, avg = evaluator.dev_scores()  # after an epoch
    scores, avg = evaluator.finish(folder, trial=1, n_writes_distill=1,
                                   n_writes_test=1)
    ```
    """

    def __init__(self, model, inputs, batching, batch_size):
        self.model = model
        self.inputs = inputs
        self.batching = batching
        self.batch_size = batch_size

    def predict(self, splits):
        return predict_splits(self.model, self.inputs, splits, self.batching,
                              self.batch_size)

    def dev_scores(self):
        """({task: metrics}, average) on the dev splits."""
        return evaluate(self.model, self.inputs,
                        self.predict(self.inputs.dev_splits()))

    def finish(self, folder, trial, n_writes_distill, n_writes_test,
               before_write=None):
        """Scores the trained model on the dev splits and writes the
        trial's prediction and submission files (`output_splits`) to
        `folder` (a `ModelDir`); `before_write` is called before anything
        is written (a lost claim raises there). Returns ({task: metrics},
        average)."""
        dev = self.inputs.dev_splits()
        splits = output_splits(self.inputs, trial, n_writes_distill,
                               n_writes_test)
        predictions = self.predict(dev + [s for s in splits if s not in dev])
        scores, avg = evaluate(self.model, self.inputs, predictions)
        if before_write:
            before_write()
        write_outputs(self.inputs, folder, trial, predictions, splits)
        return scores, avg
