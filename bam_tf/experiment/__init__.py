"""Experiments: a run's inputs read once, one trial, the trial loop,
evaluation, teachers' targets and the paper's recipes. Files and locks
are the store's (`bam_tf.store`)."""
