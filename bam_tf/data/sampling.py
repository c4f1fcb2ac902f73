"""Task sampling: how often each task's examples are drawn."""

import numpy as np


def task_sampling_probabilities(sizes, exponent=0.75):
    """P(task t) proportional to |D_t| ** exponent (paper section 3.3,
    after Bowman et al. 2018).

    1.0 samples in proportion to dataset size (the paper's "no task
    sampling" ablation), 0.0 uniformly over tasks.

    Example:
    >>> task_sampling_probabilities([100, 400], exponent=0.5)
    array([0.33333333, 0.66666667])
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.ndim != 1 or len(sizes) == 0 or np.any(sizes <= 0):
        raise ValueError(f"Dataset sizes must be positive, got {sizes}.")
    weights = sizes ** exponent
    return weights / weights.sum()


def steps_per_epoch(sizes, batch_size):
    """One epoch is sum |D_t| examples, whatever the sampling."""
    return max(1, int(np.sum(sizes)) // batch_size)
