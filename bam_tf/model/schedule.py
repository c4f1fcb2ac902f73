"""The training policy of BAM's train step: how the gold and teacher
targets mix over training and how the batch's losses are summed. It is not
part of the architecture: a saved model does not carry it."""

import dataclasses
from typing import Optional

from bam_tf.model import losses


@dataclasses.dataclass(frozen=True)
class TrainSchedule:
    """What `BamModel.train_step` needs beyond the model.

    Args:
        total_steps: training steps, for teacher annealing's lambda.
        distill: whether teacher targets are mixed in.
        teacher_annealing: lambda = step / total_steps (else fixed).
        distill_weight: the teacher's weight when annealing is off.
        distill_temperature: the distillation temperature.
        global_batch_size: the batch size over all replicas; the loss is
            divided by it so that summed replica gradients are the mean.
        loss_weights: one weight per task, in task-id order, multiplying
            each example's loss (None: all 1, the original's plain sum).
        micro_batch_size: examples a replica runs through the network at
            once (None: its whole batch). Each replica's batch must be a
            multiple of it: its gradients are summed over the micro-batches
            and applied in one update, so a training step is still one
            update on the same examples (gradient accumulation, for memory).

    Example:
    >>> schedule = TrainSchedule(total_steps=100, distill=True)
    >>> float(schedule.gold_weight(25))
    0.25
    """

    total_steps: int = 1
    distill: bool = False
    teacher_annealing: bool = True
    distill_weight: float = 0.5
    distill_temperature: float = 1.0
    global_batch_size: int = 32
    loss_weights: Optional[tuple] = None
    micro_batch_size: Optional[int] = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("total_steps", int(self.total_steps))
        set_("global_batch_size", int(self.global_batch_size))
        if self.loss_weights is not None:
            set_("loss_weights", tuple(float(w) for w in self.loss_weights))
        if self.micro_batch_size is not None:
            if int(self.micro_batch_size) < 1:
                raise ValueError(f"micro_batch_size must be positive, got "
                                 f"{self.micro_batch_size}.")
            set_("micro_batch_size", int(self.micro_batch_size))

    def gold_weight(self, step):
        """lambda at optimizer step `step` (paper 3.2)."""
        return losses.gold_weight(step, self.total_steps, self.distill,
                                  self.teacher_annealing, self.distill_weight)

    def check_tasks(self, num_tasks):
        if self.loss_weights is not None and (
                len(self.loss_weights) != num_tasks):
            raise ValueError(f"{len(self.loss_weights)} loss weights for "
                             f"{num_tasks} tasks.")
