"""Training one trial: fit and resume from checkpoints, the callbacks,
and Table 3's start from another run's weights."""
