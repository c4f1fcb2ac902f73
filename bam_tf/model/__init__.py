"""The model: a shared backbone with one head per task, its distillation
loss and training step, and the optimizer (layer-wise learning rates)."""
