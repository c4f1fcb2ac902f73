"""The multi-task BAM model: a shared backbone, one head per task, and the
training step that mixes gold and teacher targets."""

import keras
import tensorflow as tf

from bam_tf import losses
from bam_tf.distribute import is_multi_worker
from bam_tf.families import family_of


@keras.saving.register_keras_serializable(package="bam_tf")
class BamModel(keras.Model):
    """Shared encoder + per-task heads with a custom `train_step`.

    The head of a task reads the backbone's sentence vector through
    dropout: a softmax layer (logits are returned) for classification, a
    size-1 dense layer with a sigmoid for regression (labels scaled to
    [0, 1]). The sentence vector is the pooled output for families with a
    pretrained pooler (BERT, ALBERT), the first token's hidden state for
    the others (`bam_tf.families`).

    Args:
        backbone: a keras-hub backbone of a family in `FAMILIES`.
        task_specs: [(name, num_labels, is_regression)] in task-id order.
        dropout_rate: dropout before each head (0.1 in BERT and BAM).
        total_steps: training steps, for teacher annealing's lambda.
        distill: whether teacher targets are mixed in.
        teacher_annealing: lambda = step / total_steps (else fixed).
        distill_weight: the teacher's weight when annealing is off.
        distill_temperature: the distillation temperature.
        global_batch_size: the batch size over all replicas; the loss is
            divided by it so that summed replica gradients are the mean.
        loss_weights: one weight per task, in task-id order, multiplying
            each example's loss (None: all 1, the original's plain sum).
        **kwargs: `keras.Model` arguments; `dtype="mixed_float16"` makes
            `compile` wrap the optimizer in a `LossScaleOptimizer`, which
            `train_step` uses through `scale_loss` and `apply`.

    Example:
    >>> backbone = keras_hub.models.BertBackbone(
    ...     vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=32,
    ...     intermediate_dim=64, max_sequence_length=64)
    >>> model = BamModel(backbone, [("rte", 2, False), ("sts", 1, True)],
    ...                  total_steps=100, global_batch_size=32)
    """

    def __init__(self, backbone, task_specs, dropout_rate=0.1,
                 total_steps=1, distill=False, teacher_annealing=True,
                 distill_weight=0.5, distill_temperature=1.0,
                 global_batch_size=32, loss_weights=None, **kwargs):
        super().__init__(**kwargs)
        # === Layers ===
        self.backbone = backbone
        self.family = family_of(backbone)
        if self.family.sentence_vector == "first_token" and any(
                layer.name == "pooled_dense" for layer in backbone.layers):
            # ELECTRA's untrained pooler: unused, so no gradient reaches it.
            backbone.get_layer("pooled_dense").trainable = False
        self.task_specs = [tuple(s) for s in task_specs]
        self.dropouts = {}
        self.heads = {}
        for name, num_labels, _ in self.task_specs:
            self.dropouts[name] = keras.layers.Dropout(
                dropout_rate, name=f"{name}_dropout",
                dtype=self.dtype_policy)
            self.heads[name] = keras.layers.Dense(
                num_labels,
                kernel_initializer=keras.initializers.TruncatedNormal(
                    stddev=0.02),
                name=f"{name}_head", dtype=self.dtype_policy)
        # === Config ===
        self.dropout_rate = dropout_rate
        self.total_steps = int(total_steps)
        self.distill = distill
        self.teacher_annealing = teacher_annealing
        self.distill_weight = distill_weight
        self.distill_temperature = distill_temperature
        self.global_batch_size = int(global_batch_size)
        self.loss_weights = ([float(w) for w in loss_weights]
                             if loss_weights is not None else None)
        if self.loss_weights is not None and (
                len(self.loss_weights) != len(self.task_specs)):
            raise ValueError(f"{len(self.loss_weights)} loss weights for "
                             f"{len(self.task_specs)} tasks.")
        # === Metrics ===
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_trackers = {
            name: keras.metrics.Mean(name=f"loss_{name}")
            for name, _, _ in self.task_specs}

    def call(self, inputs, training=False):
        features = {k: inputs[k] for k in self.family.backbone_inputs()}
        encoded = self.backbone(features, training=training)
        if self.family.sentence_vector == "pooled":
            pooled = encoded["pooled_output"]
        else:
            sequence = (encoded["sequence_output"]
                        if isinstance(encoded, dict) else encoded)
            pooled = sequence[:, 0, :]
        outputs = {}
        for name, _, is_regression in self.task_specs:
            x = self.dropouts[name](pooled, training=training)
            x = self.heads[name](x)
            # Losses, softmax and sigmoid in float32 under mixed precision.
            x = tf.cast(x, tf.float32)
            outputs[name] = (tf.sigmoid(tf.squeeze(x, -1)) if is_regression
                             else x)
        return outputs

    @property
    def metrics(self):
        return [self.loss_tracker] + list(self.task_loss_trackers.values())

    def gold_weight(self):
        return losses.gold_weight(
            self.optimizer.iterations, self.total_steps, self.distill,
            self.teacher_annealing, self.distill_weight)

    def _batch_losses(self, batch, outputs, lam):
        per_example, per_task, masks = losses.multitask_per_example_loss(
            outputs, batch, self.task_specs, lam, self.distill_temperature,
            self.loss_weights)
        real = tf.cast(batch["is_real"], tf.float32)
        self.loss_tracker.update_state(per_example, sample_weight=real)
        for name, tracker in self.task_loss_trackers.items():
            tracker.update_state(per_task[name],
                                 sample_weight=masks[name] * real)
        return per_example * real

    def train_step(self, data):
        lam = self.gold_weight()
        with tf.GradientTape() as tape:
            outputs = self(data, training=True)
            per_example = self._batch_losses(data, outputs, lam)
            # Divided by the global batch, not the replica's: gradients are
            # summed over replicas.
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=self.global_batch_size)
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        logs = {m.name: m.result() for m in self.metrics}
        logs["lambda"] = lam
        logs["learning_rate"] = self.optimizer.learning_rate
        return self._reducible(logs)

    def test_step(self, data):
        outputs = self(data, training=False)
        self._batch_losses(data, outputs, tf.constant(1.0))
        return self._reducible({m.name: m.result() for m in self.metrics})

    def _reducible(self, logs):
        # keras#20585 (TRAPS.md 2): under MultiWorkerMirroredStrategy Keras
        # reduces logs with strategy.reduce("MEAN", v, axis=0), which fails
        # on scalars; a leading axis of 1 reduces to the scalar mean.
        if not is_multi_worker(self.distribute_strategy):
            return logs
        return {k: tf.reshape(tf.cast(v, tf.float32), [1])
                for k, v in logs.items()}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # keras#20585 (TRAPS.md 2): under a strategy Keras reduces the first
        # distributed batch to build the model, which fails for
        # MultiWorkerMirroredStrategy (and for boolean inputs). run.py
        # builds the model and its optimizer under the scope before fit,
        # so there is nothing left to build.
        if self.built and self.optimizer is not None and (
                self.optimizer.built):
            return
        super()._maybe_symbolic_build(iterator=iterator,
                                      data_batch=data_batch)

    def predict_step(self, data):
        outputs = self(data, training=False)
        return {"outputs": outputs, "eid": data["eid"],
                "is_real": data["is_real"]}

    def get_config(self):
        config = super().get_config()
        config.update({
            "backbone": keras.layers.serialize(self.backbone),
            "task_specs": [list(s) for s in self.task_specs],
            "dropout_rate": self.dropout_rate,
            "total_steps": self.total_steps,
            "distill": self.distill,
            "teacher_annealing": self.teacher_annealing,
            "distill_weight": self.distill_weight,
            "distill_temperature": self.distill_temperature,
            "global_batch_size": self.global_batch_size,
            "loss_weights": self.loss_weights,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)
