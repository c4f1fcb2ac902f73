"""Learning-rate schedule, layer depths and layer-wise AdamW."""

import keras
import tensorflow as tf

from bam_tf.encoders.families import family_of

# Keras 3 matches weight-decay exclusions against a variable's short name
# (`exclude_from_weight_decay(var_names=...)`), not its path: BERT's "LayerNorm" and "bias" patterns would match nothing.
NO_DECAY_NAMES = ("gamma", "beta", "bias")


@keras.saving.register_keras_serializable(package="bam_tf")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then linear decay
    to 0 at `total_steps` (BERT's schedule, kept continuous at the peak).

    Example:
    >>> schedule = WarmupLinearDecay(1e-4, total_steps=100, warmup_steps=10)
    >>> float(schedule(5))   # half-way through warm-up
    5e-05
    """

    def __init__(self, peak, total_steps, warmup_steps):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.cast(self.warmup_steps, tf.float32)
        total = tf.cast(self.total_steps, tf.float32)
        up = step / warmup if self.warmup_steps > 0 else tf.ones_like(step)
        down = (total - step) / tf.maximum(total - warmup, 1.0)
        return self.peak * tf.clip_by_value(tf.minimum(up, down), 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


def layer_depth(path, backbone, backbone_paths):
    """Depth from the top: 0 for task heads, 1 for the pooler,
    num_layers + 1 - i for transformer layer i (0-based), num_layers + 2
    for the embeddings (the original: rate = lr * alpha^(L + 2 - depth from
    the bottom)); the backbone's family maps paths to layers
    (`Family.depth`, which also says how ALBERT's shared layers count)."""
    if path not in backbone_paths:
        return 0
    return family_of(backbone).depth(
        path, backbone.num_layers, getattr(backbone, "num_groups", 1))


def layerwise_multipliers(model, backbone, lr_decay):
    """{variable path: lr_decay ** depth} for every trainable variable."""
    backbone_paths = {v.path for v in backbone.trainable_variables}
    return {v.path: lr_decay ** layer_depth(v.path, backbone, backbone_paths)
            for v in model.trainable_variables}


def _rows_to_power_of_two(gradient, smallest=64):
    """IndexedSlices with zero rows (at index 0) added up to a power of two
    of at least `smallest` rows."""
    rows = tf.shape(gradient.indices)[0]
    size = tf.maximum(smallest, tf.cast(2 ** tf.math.ceil(tf.math.log(
        tf.cast(tf.maximum(rows, 1), tf.float32)) / tf.math.log(2.0)),
        tf.int32))
    # log2 rounds: a power of two may come out one short of `rows`.
    size = tf.where(size < rows, 2 * size, size)
    pad = size - rows
    values = tf.pad(gradient.values, tf.concat(
        [[[0, pad]], tf.zeros([tf.rank(gradient.values) - 1, 2], tf.int32)],
        0))
    indices = tf.pad(gradient.indices, [[0, pad]])
    return tf.IndexedSlices(values, indices, gradient.dense_shape)


@keras.saving.register_keras_serializable(package="bam_tf")
class LayerwiseAdamW(keras.optimizers.Adam):
    """Adam with decoupled weight decay and a learning-rate multiplier per
    variable.

    The multiplier scales the update (and the decay), not the gradient:
    Adam divides gradient scale away, so scaling gradients would change
    nothing.

    Args:
        lr_multipliers: {variable path: multiplier}; missing paths get 1.
        weight_decay_rate: decoupled weight decay, applied as
            `var -= lr * multiplier * rate * var` before the Adam step,
            except on variables named in `NO_DECAY_NAMES`.
        jit_update: compile the whole update (clipping, decay, Adam) with
            XLA when no distribution strategy is in force: one fused
            program instead of a few ops per variable (docs/benchmarks.md,
            "The optimizer update under XLA"), compiled for a few
            embedding-gradient sizes whatever the batches' shapes.
            Under a strategy the update needs cross-replica calls XLA
            cannot hold, so it runs as usual.
        **kwargs: `keras.optimizers.Adam` arguments (learning_rate,
            beta_1, beta_2, epsilon, global_clipnorm, ...).

    Example:
    >>> optimizer = LayerwiseAdamW(
    ...     {"pooled_dense/kernel": 0.9}, weight_decay_rate=0.01,
    ...     learning_rate=1e-4, epsilon=1e-6, global_clipnorm=1.0)
    """

    def __init__(self, lr_multipliers=None, weight_decay_rate=0.0,
                 jit_update=True, **kwargs):
        super().__init__(**kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self.weight_decay_rate = float(weight_decay_rate)
        self.jit_update = bool(jit_update)
        self._jit_apply = None  # (variable ids, compiled update)

    def apply(self, grads, trainable_variables=None):
        if not (self.jit_update and self.built and trainable_variables
                is not None and not tf.distribute.has_strategy()):
            return super().apply(grads, trainable_variables)
        variables = list(trainable_variables)
        # Keyed on ids, not on the variables: a list of variables held by
        # the optimizer would be tracked as its own (and saved with it).
        # The ids cannot be reused by other variables while the compiled
        # update, which captures these, is cached.
        key = tuple(id(v) for v in variables)
        if self._jit_apply is None or self._jit_apply[0] != key:
            parent = super().apply
            self._jit_apply = (key, tf.function(
                lambda g: parent(g, variables), jit_compile=True))
        # An embedding's gradient is IndexedSlices with a row per token of
        # the batch, and XLA compiles the update for each row count it
        # sees (2.5 s each on MiniLM; packed batches bring many counts).
        # Zero rows added up to the next power of two leave every sum
        # Keras takes of them (Adam's moments, the global norm) as it was,
        # and leave a few counts to compile.
        self._jit_apply[1]([_rows_to_power_of_two(g)
                            if isinstance(g, tf.IndexedSlices) else g
                            for g in grads])

    def build(self, var_list):
        super().build(var_list)
        self._factors = [self.lr_multipliers.get(v.path, 1.0)
                         for v in var_list]
        self._decays = [
            0.0 if v.path.split("/")[-1] in NO_DECAY_NAMES
            else self.weight_decay_rate for v in var_list]

    def variable_factor(self, variable):
        return self._factors[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        lr = tf.cast(learning_rate, variable.dtype) * self._factors[index]
        decay = self._decays[index]
        if decay:
            variable.assign_sub(variable * (lr * decay))
        super().update_step(gradient, variable, lr)

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = self.lr_multipliers
        config["weight_decay_rate"] = self.weight_decay_rate
        config["jit_update"] = self.jit_update
        return config


def build_optimizer(model, backbone, learning_rate, total_steps,
                    warmup_proportion=0.1, weight_decay_rate=0.01,
                    lr_decay=1.0, clip_norm=1.0, jit_update=True):
    """BAM's optimizer: AdamW (beta1 0.9, beta2 0.999, eps 1e-6), warm-up
    then linear decay, global-norm clipping, layer-wise rates.

    `jit_update`: see `LayerwiseAdamW` (compiled for a few embedding-
    gradient sizes, whatever the batches' shapes)."""
    schedule = WarmupLinearDecay(
        learning_rate, total_steps, int(round(warmup_proportion * total_steps)))
    return LayerwiseAdamW(
        layerwise_multipliers(model, backbone, lr_decay),
        weight_decay_rate=weight_decay_rate, learning_rate=schedule,
        beta_1=0.9, beta_2=0.999, epsilon=1e-6,
        global_clipnorm=clip_norm, jit_update=jit_update)
