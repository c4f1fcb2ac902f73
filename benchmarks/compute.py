"""What the machine can do and what a training step asks of it: the
matrix-product peak, the training FLOPs per real token, and the fraction
of the compute-bound limit a measured rate reaches.

The FLOPs are the model's ideal work, counted on real tokens only:
forward and backward through every non-embedding weight cost 6 FLOPs per
parameter per token (2 forward, 4 backward), and attention's two
products (Q K^T and A V, each 2 l d per token forward) cost 12 l d per
token per layer, fwd and bwd, for a sequence of l real tokens. Padding,
dropout, layer norms, softmax and the optimizer update are not counted:
they are what stands between a step and the limit.
"""

import time

import numpy as np
import tensorflow as tf


def matmul_peak_gflops(n=2048, repeats=5):
    """The best of `repeats` timings of one float32 n x n x n product
    (2 n^3 FLOPs) in a compiled function, in GFLOP/s."""
    a = tf.random.stateless_normal([n, n], seed=[1, 2])
    b = tf.random.stateless_normal([n, n], seed=[3, 4])
    product = tf.function(lambda x, y: tf.reduce_sum(tf.linalg.matmul(x, y)))
    product(a, b).numpy()  # trace and warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best / 1e9


def non_embedding_parameters(backbone):
    """Weights a token's computation passes through: all the backbone's
    but its embedding tables (token, position, segment), whose rows are
    looked up, not multiplied."""
    return int(sum(np.prod(w.shape) for w in backbone.weights
                   if not w.path.endswith("embeddings")))


def training_flops_per_real_token(backbone, lengths):
    """Ideal training FLOPs per real token over sequences of `lengths`
    real tokens: 6 N + 12 L d * (sum l^2 / sum l), N the non-embedding
    parameters, L layers, d the hidden size (the module docstring)."""
    lengths = np.asarray(lengths, np.float64)
    mean_context = float(np.sum(lengths ** 2) / np.sum(lengths))
    return (6.0 * non_embedding_parameters(backbone)
            + 12.0 * backbone.num_layers * backbone.hidden_dim
            * mean_context)


def limit_summary(tokens_per_s, flops_per_token, peak_gflops):
    """The compute-bound limit in real tokens/s and the fraction of it
    that `tokens_per_s` reaches."""
    limit = peak_gflops * 1e9 / flops_per_token
    return {"flops_per_real_token": flops_per_token,
            "limit_tokens_per_s": limit,
            "fraction_of_limit": tokens_per_s / limit}
