"""The BAM loss as pure functions: target mixing, soft cross-entropy, and
the per-example loss of a mixed multi-task batch."""

import tensorflow as tf


def gold_weight(step, total_steps, distill, teacher_annealing,
                distill_weight):
    """lambda, the weight of the gold label in the target (paper 3.2).

    Without distillation it is 1. With teacher annealing it rises linearly
    from 0 to 1 over training (lambda = step / total_steps); otherwise it
    is fixed at 1 - distill_weight (`distill_weight` = 1: pure
    distillation, the paper's lambda = 0 ablation).
    """
    if not distill:
        return tf.constant(1.0)
    if teacher_annealing:
        progress = tf.cast(step, tf.float32) / float(max(total_steps, 1))
        return tf.clip_by_value(progress, 0.0, 1.0)
    return tf.constant(1.0 - distill_weight)


def classification_loss(logits, labels, teacher_logits, weight,
                        temperature=1.0):
    """Per-example cross-entropy against weight * gold + (1 - weight) *
    softmax(teacher_logits).

    At temperature 1 this is exactly the cross-entropy with the mixed target
    (the original). At T != 1 the teacher part compares softmax(teacher / T)
    with softmax(student / T) and is scaled by T^2 (Hinton et al. 2015) so
    that its gradients keep their size.

    Args:
        logits: [batch, num_labels] student logits.
        labels: [batch] int gold classes.
        teacher_logits: [batch, num_labels].
        weight: [batch] or scalar gold weight (lambda; 1 without teacher).
        temperature: the distillation temperature.
    """
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    gold = -tf.reduce_sum(
        tf.one_hot(labels, tf.shape(logits)[-1]) * log_probs, axis=-1)
    teacher_probs = tf.nn.softmax(teacher_logits / temperature, axis=-1)
    student_log_probs = tf.nn.log_softmax(logits / temperature, axis=-1)
    soft = -tf.reduce_sum(teacher_probs * student_log_probs, axis=-1)
    soft = soft * temperature ** 2
    return weight * gold + (1.0 - weight) * soft


def regression_loss(predictions, targets, teacher_predictions, weight):
    """Per-example squared error against weight * gold + (1 - weight) *
    teacher (all on the [0, 1] scale)."""
    mixed = weight * targets + (1.0 - weight) * teacher_predictions
    return tf.square(predictions - mixed)


def multitask_per_example_loss(outputs, batch, task_specs, lam,
                               temperature=1.0, loss_weights=None):
    """Each example's loss for its own task, times the task's weight.

    Every head runs on every example; a one-hot of the task id masks out the
    other tasks' losses (the original's static-shape trick, cheap on TPU).

    Args:
        outputs: {task name: logits [batch, n] or predictions [batch]}.
        batch: a batch of the pipeline's elements.
        task_specs: [(name, num_labels, is_regression)] in task-id order.
        lam: the gold weight lambda (scalar).
        temperature: the distillation temperature.
        loss_weights: one weight per task in task-id order, or None (all
            1: the original's plain sum).

    Returns:
        (per_example [batch], weighted; {task name: its per-example loss
        masked to it, unweighted, so that logged task losses compare
        across runs}; {task name: mask [batch]}).
    """
    has_teacher = tf.cast(batch["has_teacher"], tf.float32)
    # Examples without a teacher learn from gold labels alone.
    weight = has_teacher * lam + (1.0 - has_teacher)
    total = tf.zeros_like(has_teacher)
    per_task, masks = {}, {}
    loss_weights = loss_weights or [1.0] * len(task_specs)
    for task_id, (name, num_labels, is_regression) in enumerate(task_specs):
        mask = tf.cast(tf.equal(batch["task_id"], task_id), tf.float32)
        out = tf.cast(outputs[name], tf.float32)
        if is_regression:
            loss = regression_loss(out, batch["target"],
                                   batch["teacher_prediction"], weight)
        else:
            loss = classification_loss(
                out, batch["label"],
                batch["teacher_logits"][:, :num_labels], weight,
                temperature)
        per_task[name] = loss * mask
        masks[name] = mask
        total += loss_weights[task_id] * loss * mask
    return total, per_task, masks
