"""From the configuration to the training step: every setting that decides
what a student learns reaches the step that trains it.

A real run (`train_and_evaluate`, in process) is watched at
`BamModel.train_step`: each step records, before it updates anything, the
batch it was given, its gold weight lambda and its learning rate, and the
model it runs on (its compiled `TrainSchedule` and optimizer). The
tests compare these with numbers computed by hand from the settings, not
with config.json: a setting written to config.json but dropped on the way
(the stream built without teacher targets, the schedule or optimizer built
with a default) fails here.

The teachers are written by hand (a train predictions file each), with
outputs that are a known function of the example id, so the targets each
batch must carry are exact and no teacher is trained.
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from bam_tf.data import pipeline
from bam_tf.data.loading import load_split
from bam_tf.experiment.run import train_and_evaluate
from bam_tf.model.bam_model import BamModel
from bam_tf.runtime import Runtime
from bam_tf.store.model_dir import ModelDir
from bam_tf.store.outputs import write_predictions
from bam_tf.tasks import get_task

from conftest import debug_config

RTE, STS = get_task("rte"), get_task("sts")

# rte keeps its first 24 training rows, sts its first 24 in both orders
# (an unordered pair: 48): sizes 24 and 48, 72 examples, 6 batches of 12,
# one epoch. Every value differs from its default and from the presets.
STEPS = 6
LEARNING_RATE = 2e-3
SETTINGS = dict(
    max_train_examples=24, train_batch_size=12, num_train_epochs=1.0,
    learning_rate=LEARNING_RATE, warmup_proportion=0.5, lr_decay=0.5,
    task_weight_exponent=0.5, task_loss_weights={"sts": 4},
    distill=True, teachers={"rte": "rte-teacher", "sts": "sts-teacher"},
    teacher_annealing=False, distill_weight=0.3, distill_temperature=2.0,
    dropout_rate=0.2, weight_decay_rate=0.02, clip_norm=2.0,
    n_writes_test=0, n_writes_distill=0)


def teacher_logits(eid):
    """The rte teacher's logits for example `eid`: distinct per example."""
    return np.stack([0.1 * eid, 1.0 - 0.2 * eid], -1).astype(np.float32)


def teacher_score(eid):
    """The sts teacher's prediction on the label scale (0 to 5)."""
    return (0.05 * eid).astype(np.float32)


# The keys of a batch the records keep: ids, task and teacher targets.
RECORDED = ("eid", "task_id", "has_teacher", "teacher_logits",
            "teacher_prediction", "is_real")


def _recording(records, models):
    """`BamModel.train_step`, recording what each step receives."""
    original = BamModel.train_step

    def train_step(self, data):
        # Traced once per batch shape: the model the compiled step runs.
        if not any(m is self for m in models):
            models.append(self)
        # Read before the update: the step's own lambda and learning rate.
        seen = [self.optimizer.iterations, self.gold_weight(),
                self.optimizer.learning_rate] + [data[k] for k in RECORDED]

        def record(step, lam, lr, *batch):
            records.append({
                "step": int(step), "lambda": float(lam), "lr": float(lr),
                **{k: _per_example(k, v.numpy())
                   for k, v in zip(RECORDED, batch)}})
            return 0

        done = tf.py_function(record, seen, tf.int32)
        with tf.control_dependencies([done]):
            return original(self, data)

    return train_step


def _per_example(key, value):
    # Packed batches (the default layout) lead with a group axis.
    if key == "teacher_logits":
        return value.reshape(-1, value.shape[-1])
    return value.reshape(-1)


def _write_teacher(bam_dir, name, glue_dir, task, outputs_of):
    """A teacher folder holding only its train predictions for the rows the
    student reads (same cap, same doubling), keyed by example id."""
    examples = load_split(task, "train", glue_dir,
                          max_examples=SETTINGS["max_train_examples"])
    write_predictions(ModelDir(bam_dir, name).predictions_path(
        task.name, "train", 1), task, examples, examples.eids,
        outputs_of(examples.eids))
    return examples


class Run:
    """What one watched run gave the training step."""

    def __init__(self, config, runtime, monkeypatch):
        self.records, models, streams = [], [], []
        monkeypatch.setattr(BamModel, "train_step",
                            _recording(self.records, models))
        real_train_dataset = pipeline.train_dataset

        def train_dataset(*args, **kwargs):
            streams.append(real_train_dataset(*args, **kwargs))
            return streams[-1]

        # trial.py calls it through the module: what it gets, we keep.
        monkeypatch.setattr(pipeline, "train_dataset", train_dataset)
        train_and_evaluate(config, verbose=0, runtime=runtime)
        [self.model] = models
        [(_, self.probabilities)] = streams
        self.records.sort(key=lambda r: r["step"])


@pytest.fixture(scope="module")
def runs(tiny_glue, tmp_path_factory):
    bam_dir = str(tmp_path_factory.mktemp("bam"))
    rte = _write_teacher(bam_dir, "rte-teacher", tiny_glue, RTE,
                         teacher_logits)
    sts = _write_teacher(bam_dir, "sts-teacher", tiny_glue, STS,
                         teacher_score)
    assert (len(rte), len(sts)) == (24, 48)
    watched = {}
    # "fixed": lambda held at 1 - distill_weight, the default packed
    # batches, float32, whole batches. "annealed": lambda rising, batches
    # padded to max_seq_length (the other way the stream is laid out),
    # bfloat16, micro-batches of 6, two steps per call.
    for name, changes, runtime in (
            ("fixed", {}, Runtime()),
            ("annealed", {"teacher_annealing": True, "padding": "max_length",
                          "mixed_precision": "mixed_bfloat16"},
             Runtime(micro_batch_size=6, steps_per_execution=2))):
        with pytest.MonkeyPatch.context() as monkeypatch:
            watched[name] = Run(debug_config(
                bam_dir, tiny_glue, name, ["rte", "sts"],
                **{**SETTINGS, **changes}), runtime, monkeypatch)
    return watched


BOTH = pytest.mark.parametrize("name", ["fixed", "annealed"])


@BOTH
def test_every_step_runs_once(runs, name):
    run = runs[name]
    assert [r["step"] for r in run.records] == list(range(STEPS))
    assert run.model.schedule.total_steps == STEPS


@BOTH
def test_teacher_targets_reach_the_step(runs, name):
    run = runs[name]
    seen = {0: 0, 1: 0}
    for r in run.records:
        assert (r["is_real"] == 1).all()
        # Every example of both tasks has its teacher's targets, those of
        # its own example id.
        np.testing.assert_array_equal(r["has_teacher"], 1.0)
        for i, (eid, task_id) in enumerate(zip(r["eid"], r["task_id"])):
            seen[task_id] += 1
            if task_id == 0:  # rte: the logits, as written
                np.testing.assert_allclose(r["teacher_logits"][i],
                                           teacher_logits(eid), rtol=1e-6)
            else:  # sts: the prediction scaled to [0, 1] (/ 5)
                np.testing.assert_allclose(r["teacher_prediction"][i],
                                           eid / 100, rtol=1e-5)
    assert sum(seen.values()) == STEPS * 12
    assert min(seen.values()) > 0, seen


def test_fixed_mixing_of_gold_and_teacher(runs):
    run = runs["fixed"]
    schedule = run.model.schedule
    assert schedule.distill and not schedule.teacher_annealing
    assert schedule.distill_weight == pytest.approx(0.3)
    assert schedule.distill_temperature == pytest.approx(2.0)
    # Annealing off: lambda stays 1 - distill_weight at every step.
    np.testing.assert_allclose([r["lambda"] for r in run.records],
                               [0.7] * STEPS, rtol=1e-6)


def test_teacher_annealing(runs):
    run = runs["annealed"]
    schedule = run.model.schedule
    assert schedule.distill and schedule.teacher_annealing
    assert schedule.distill_temperature == pytest.approx(2.0)
    # lambda = step / total_steps: from all teacher to nearly all gold.
    np.testing.assert_allclose([r["lambda"] for r in run.records],
                               [s / STEPS for s in range(STEPS)], rtol=1e-6)


@BOTH
def test_task_loss_weights_reach_the_step(runs, name):
    # Task-id order: rte 1 (unnamed), sts 4.
    assert runs[name].model.schedule.loss_weights == (1.0, 4.0)


@BOTH
def test_learning_rate_schedule_of_the_step(runs, name):
    # Warm-up over round(0.5 * 6) = 3 steps, then linear decay to 0 at 6.
    np.testing.assert_allclose(
        [r["lr"] for r in runs[name].records],
        [LEARNING_RATE * f for f in (0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3)],
        rtol=1e-5, atol=1e-9)


def _expected_depth(path):
    """Depth from the top in a 2-layer BERT (optimization.layer_depth):
    heads 0, pooler 1, layer 1 2, layer 0 3, the embeddings 4."""
    if re.search(r"(rte|sts)_head/", path):
        return 0
    if "pooled_dense/" in path:
        return 1
    match = re.search(r"transformer_layer_(\d+)/", path)
    if match:
        return {1: 2, 0: 3}[int(match.group(1))]
    return 4


@BOTH
def test_layerwise_learning_rates_of_the_optimizer(runs, name):
    model = runs[name].model
    factors = {v.path: model.optimizer.variable_factor(v)
               for v in model.trainable_variables}
    depths = {p: _expected_depth(p) for p in factors}
    # Every depth is present: heads, pooler, both layers, embeddings.
    assert set(depths.values()) == {0, 1, 2, 3, 4}, depths
    # lr_decay 0.5: the step's rate is learning_rate times 1 (heads),
    # 1/2 (pooler), 1/4 (layer 1), 1/8 (layer 0), 1/16 (embeddings).
    rates = {0: 1.0, 1: 0.5, 2: 0.25, 3: 0.125, 4: 0.0625}
    for path, factor in factors.items():
        assert factor == pytest.approx(rates[depths[path]]), path


@BOTH
def test_task_sampling_probabilities(runs, name):
    # |D| ** 0.5 with sizes 24 and 48: 1 : sqrt(2).
    np.testing.assert_allclose(runs[name].probabilities,
                               [1 / (1 + 2 ** 0.5), 2 ** 0.5 / (1 + 2 ** 0.5)],
                               rtol=1e-12)


@BOTH
def test_regularisation_reaches_the_model_and_optimizer(runs, name):
    model = runs[name].model
    # Dropout before each head, and inside the debug encoder (its own
    # setting: a pretrained encoder keeps its checkpoint's).
    assert model.dropout_rate == pytest.approx(0.2)
    assert model.backbone.get_config()["dropout"] == pytest.approx(0.2)
    assert model.optimizer.weight_decay_rate == pytest.approx(0.02)
    assert model.optimizer.global_clipnorm == pytest.approx(2.0)


def test_precision_and_runtime_reach_the_step(runs):
    fixed, annealed = runs["fixed"].model, runs["annealed"].model
    assert fixed.dtype_policy.name == "float32"
    assert annealed.dtype_policy.name == "mixed_bfloat16"
    assert annealed.backbone.dtype_policy.name == "mixed_bfloat16"
    # Micro-batches of 6: two per batch of 12; whole batches otherwise.
    assert fixed.schedule.micro_batch_size is None
    assert annealed.schedule.micro_batch_size == 6
    assert (fixed.steps_per_execution, annealed.steps_per_execution) == (
        1, 2)
