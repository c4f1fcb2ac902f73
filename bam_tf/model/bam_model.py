"""The multi-task BAM model: a shared backbone, one head per task, and the
training step that mixes gold and teacher targets."""

import keras
import tensorflow as tf

from bam_tf.data import packing
from bam_tf.distribute import is_multi_worker
from bam_tf.encoders.families import family_of
from bam_tf.encoders.packed import packed_sentence_vectors
from bam_tf.model import losses
from bam_tf.model.schedule import TrainSchedule
from bam_tf.tasks.task import HeadSpec


@keras.saving.register_keras_serializable(package="bam_tf")
class BamModel(keras.Model):
    """Shared encoder + per-task heads with a custom `train_step`.

    The head of a task reads the backbone's sentence vector through
    dropout: a softmax layer (logits are returned) for classification, a
    size-1 dense layer with a sigmoid for regression (labels scaled to
    [0, 1]). The sentence vector is the pooled output for families with a
    pretrained pooler (BERT, ALBERT), the first token's hidden state for
    the others (`bam_tf.encoders.families`).

    It takes padded batches (`token_ids`, `segment_ids`, `padding_mask`
    of [batch, length]) or packed ones (`bam_tf.data.packing`: several
    examples a row, each seeing only itself), and computes the same
    outputs from either (`bam_tf.encoders.packed`).

    Its config is its architecture (backbone, tasks, dropout); how the
    train step mixes and sums losses is the `TrainSchedule` given to
    `compile`, so a saved model holds no training policy.

    Args:
        backbone: a keras-hub backbone of a family in `FAMILIES`.
        task_specs: `HeadSpec`s (name, num_labels, is_regression) in
            task-id order (`task.head_spec`).
        dropout_rate: dropout before each head (0.1 in BERT and BAM).
        **kwargs: `keras.Model` arguments; `dtype="mixed_float16"` makes
            `compile` wrap the optimizer in a `LossScaleOptimizer`, which
            `train_step` uses through `scale_loss` and `apply`.

    Example:
    >>> import keras_hub
    >>> from bam_tf.model.schedule import TrainSchedule
    >>> from bam_tf.tasks.task import HeadSpec
    >>> backbone = keras_hub.models.BertBackbone(
    ...     vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=32,
    ...     intermediate_dim=64, max_sequence_length=64)
    >>> model = BamModel(backbone, [HeadSpec("rte", 2, False),
    ...                             HeadSpec("sts", 1, True)])
    >>> model.compile(optimizer="adam", schedule=TrainSchedule(
    ...     total_steps=100, distill=True, global_batch_size=32))
    """

    def __init__(self, backbone, task_specs, dropout_rate=0.1, **kwargs):
        super().__init__(**kwargs)
        # === Layers ===
        self.backbone = backbone
        self.family = family_of(backbone)
        if self.family.sentence_vector == "first_token" and any(
                layer.name == "pooled_dense" for layer in backbone.layers):
            # ELECTRA's untrained pooler: unused, so no gradient reaches it.
            backbone.get_layer("pooled_dense").trainable = False
        self.task_specs = [HeadSpec(*s) for s in task_specs]
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
        self.schedule = None  # set by compile
        # === Metrics ===
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_trackers = {
            name: keras.metrics.Mean(name=f"loss_{name}")
            for name, _, _ in self.task_specs}

    def compile(self, optimizer="adam", schedule=None, **kwargs):
        """`keras.Model.compile`, plus the train step's `TrainSchedule`
        (default: gold labels only, batches of 32)."""
        schedule = schedule or TrainSchedule()
        schedule.check_tasks(len(self.task_specs))
        self.schedule = schedule
        super().compile(optimizer=optimizer, **kwargs)

    def call(self, inputs, training=False):
        if packing.is_packed(inputs):
            pooled = packed_sentence_vectors(
                self.backbone, packing.merge_groups(inputs), training)
        else:
            pooled = self._sentence_vectors(inputs, training)
        outputs = {}
        for name, _, is_regression in self.task_specs:
            x = self.dropouts[name](pooled, training=training)
            x = self.heads[name](x)
            # Losses, softmax and sigmoid in float32 under mixed precision.
            x = tf.cast(x, tf.float32)
            outputs[name] = (tf.sigmoid(tf.squeeze(x, -1)) if is_regression
                             else x)
        return outputs

    def _sentence_vectors(self, inputs, training):
        features = {k: inputs[k] for k in self.family.backbone_inputs()}
        encoded = self.backbone(features, training=training)
        if self.family.sentence_vector == "pooled":
            pooled = encoded["pooled_output"]
        else:
            sequence = (encoded["sequence_output"]
                        if isinstance(encoded, dict) else encoded)
            pooled = sequence[:, 0, :]
        return pooled

    @property
    def metrics(self):
        return [self.loss_tracker] + list(self.task_loss_trackers.values())

    def gold_weight(self):
        return self.schedule.gold_weight(self.optimizer.iterations)

    def _batch_losses(self, batch, outputs, lam):
        per_example, per_task, masks = losses.multitask_per_example_loss(
            outputs, batch, self.task_specs, lam,
            self.schedule.distill_temperature, self.schedule.loss_weights)
        real = tf.cast(batch["is_real"], tf.float32)
        self.loss_tracker.update_state(per_example, sample_weight=real)
        for name, tracker in self.task_loss_trackers.items():
            tracker.update_state(per_task[name],
                                 sample_weight=masks[name] * real)
        return per_example * real

    def train_step(self, data):
        lam = self.gold_weight()
        num_micro = self._num_micro_batches(data)
        if num_micro is None or (isinstance(num_micro, int)
                                 and num_micro == 1):
            gradients = self._gradients(data, lam)
        else:
            gradients = self._accumulated_gradients(data, lam, num_micro)
        self.optimizer.apply(gradients, self.trainable_variables)
        logs = {m.name: m.result() for m in self.metrics}
        logs["lambda"] = lam
        logs["learning_rate"] = self.optimizer.learning_rate
        return self._reducible(logs)

    def _gradients(self, batch, lam):
        batch = _merged(batch)
        with tf.GradientTape() as tape:
            outputs = self(batch, training=True)
            per_example = self._batch_losses(batch, outputs, lam)
            # Divided by the global batch, not the replica's (gradients are
            # summed over replicas) nor the micro-batch's (summed over
            # micro-batches).
            loss = tf.nn.compute_average_loss(
                per_example,
                global_batch_size=self.schedule.global_batch_size)
            scaled = self.optimizer.scale_loss(loss)
        return tape.gradient(scaled, self.trainable_variables)

    def _num_micro_batches(self, data):
        """None without micro-batches; else their number: an int when the
        replica's batch size is static, a tensor when it is not (length
        buckets leave the batch dimension unknown)."""
        micro_batch_size = self.schedule.micro_batch_size
        if micro_batch_size is None:
            return None
        # No apostrophe: the graph's assertion would print it escaped.
        message = (f"micro_batch_size {micro_batch_size} must divide "
                   "the training batch of every replica (train_batch_size "
                   "/ number of replicas)")
        if packing.is_packed(data):
            # The pipeline packed one group per micro-batch
            # (`bam_tf.data.packing`): the split is the group axis.
            groups, size = data["task_id"].shape[:2]
            if size != micro_batch_size:
                raise ValueError(f"{message}; got packed groups of {size} "
                                 "examples.")
            return groups if groups is not None else tf.shape(
                data["task_id"])[0]
        size = data["task_id"].shape[0]
        if size is not None:
            if size % micro_batch_size:
                raise ValueError(f"{message}; got {size} examples.")
            return size // micro_batch_size
        size = tf.shape(data["task_id"])[0]
        check = tf.debugging.assert_equal(size % micro_batch_size, 0,
                                          message=message)
        # The split reads this number: the check runs before it.
        with tf.control_dependencies([check] if check is not None else []):
            return tf.identity(size // micro_batch_size)

    def _accumulated_gradients(self, data, lam, num_micro):
        # One update on the whole batch, computed a micro-batch at a time
        # (rather than the optimizer's gradient_accumulation_steps, which
        # makes every micro-batch an optimizer step: the learning-rate
        # schedule, teacher annealing, checkpoints and resumption would
        # all count micro-batches). A while loop run one iteration at a
        # time keeps one micro-batch's activations alive, not all of them.
        micro_batch_size = self.schedule.micro_batch_size

        def split(v):
            rest = v.shape[1:]
            if rest.is_fully_defined():  # static shapes stay static (TPU)
                return tf.reshape(
                    v, [num_micro, micro_batch_size] + rest.as_list())
            return tf.reshape(v, tf.concat(
                [[num_micro, micro_batch_size], tf.shape(v)[1:]], 0))

        parts = data if packing.is_packed(data) else {
            k: split(v) for k, v in data.items()}
        variables = self.trainable_variables
        unreached = set()  # variables with no gradient, known when traced

        def body(i, sums):
            micro = {k: v[i] for k, v in parts.items()}
            gradients = self._gradients(micro, lam)
            unreached.update(j for j, g in enumerate(gradients) if g is None)
            return i + 1, [
                s if g is None else s + tf.convert_to_tensor(g)
                for s, g in zip(sums, gradients)]

        zeros = [tf.zeros(v.shape, v.dtype) for v in variables]
        _, sums = tf.while_loop(lambda i, _: i < num_micro, body,
                                (tf.constant(0), zeros),
                                parallel_iterations=1)
        # As without micro-batches: no gradient, no update (nor decay).
        return [None if j in unreached else s for j, s in enumerate(sums)]

    def test_step(self, data):
        data = _merged(data)
        outputs = self(data, training=False)
        self._batch_losses(data, outputs, tf.constant(1.0))
        return self._reducible({m.name: m.result() for m in self.metrics})

    def _reducible(self, logs):
        # keras-team/keras#20585: under MultiWorkerMirroredStrategy Keras
        # reduces logs with strategy.reduce("MEAN", v, axis=0), which fails
        # on scalars; a leading axis of 1 reduces to the scalar mean.
        # With one replica (a single worker) nothing is reduced, and the
        # callbacks would get the leading axis.
        strategy = self.distribute_strategy
        if not is_multi_worker(strategy) or (
                strategy.num_replicas_in_sync == 1):
            return logs
        return {k: tf.reshape(tf.cast(v, tf.float32), [1])
                for k, v in logs.items()}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # keras-team/keras#20585: under a strategy Keras reduces the first
        # distributed batch to build the model, which fails for
        # MultiWorkerMirroredStrategy (and for boolean inputs). A trial
        # builds the model and its optimizer under the scope before fit,
        # so there is nothing left to build.
        if self.built and self.optimizer is not None and (
                self.optimizer.built):
            return
        super()._maybe_symbolic_build(iterator=iterator,
                                      data_batch=data_batch)

    def predict_step(self, data):
        data = _merged(data)
        outputs = self(data, training=False)
        return {"outputs": outputs, "eid": data["eid"],
                "is_real": data["is_real"]}

    def get_config(self):
        config = super().get_config()
        config.update({
            "backbone": keras.layers.serialize(self.backbone),
            "task_specs": [list(s) for s in self.task_specs],
            "dropout_rate": self.dropout_rate,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = {k: v for k, v in config.items()
                  if k not in _SCHEDULE_KEYS}
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)


def _merged(batch):
    return packing.merge_groups(batch) if packing.is_packed(batch) else batch


# Model files saved before the schedule left the model's config carry these
# (`total_steps=1, distill=False` in exports): read and dropped.
_SCHEDULE_KEYS = ("total_steps", "distill", "teacher_annealing",
                  "distill_weight", "distill_temperature",
                  "global_batch_size", "loss_weights", "micro_batch_size")
