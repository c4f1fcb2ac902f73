import math

import numpy as np
import pytest
import tensorflow as tf

from bam_tf.model import losses

SPECS = [("rte", 2, False), ("sts", 1, True)]


def _batch(has_teacher=1.0):
    return {
        "task_id": tf.constant([0, 1]),
        "label": tf.constant([0, 0]),
        "target": tf.constant([0.0, 0.6]),
        "teacher_logits": tf.constant([[0.0, 0.0], [0.0, 0.0]]),
        "teacher_prediction": tf.constant([0.0, 0.2]),
        "has_teacher": tf.constant([has_teacher, has_teacher]),
    }


OUTPUTS = {"rte": tf.constant([[1.0, 0.0], [5.0, -5.0]]),
           "sts": tf.constant([0.3, 0.8])}
# rte example: logits [1, 0], gold class 0, teacher uniform.
GOLD_CE = math.log(1 + math.exp(-1))                   # 0.31326
SOFT_CE = 0.5 * (GOLD_CE + math.log(1 + math.exp(1)))  # 0.81326


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_hand_computed_batch_with_teacher(lam):
    per_example, per_task, masks = losses.multitask_per_example_loss(
        OUTPUTS, _batch(), SPECS, tf.constant(lam))
    # sts example: prediction 0.8, gold 0.6, teacher 0.2.
    mixed_target = lam * 0.6 + (1 - lam) * 0.2
    expected = [lam * GOLD_CE + (1 - lam) * SOFT_CE,
                (0.8 - mixed_target) ** 2]
    np.testing.assert_allclose(per_example.numpy(), expected, rtol=1e-6)
    # Each example counts for its own task only.
    np.testing.assert_allclose(per_task["rte"].numpy(), [expected[0], 0],
                               rtol=1e-6)
    np.testing.assert_allclose(per_task["sts"].numpy(), [0, expected[1]],
                               rtol=1e-6)
    assert masks["sts"].numpy().tolist() == [0.0, 1.0]


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_without_teacher_gold_alone(lam):
    per_example, _, _ = losses.multitask_per_example_loss(
        OUTPUTS, _batch(has_teacher=0.0), SPECS, tf.constant(lam))
    np.testing.assert_allclose(per_example.numpy(),
                               [GOLD_CE, (0.8 - 0.6) ** 2], rtol=1e-6)


def test_task_loss_weights_scale_the_total_not_the_task_losses():
    plain, _, _ = losses.multitask_per_example_loss(
        OUTPUTS, _batch(), SPECS, tf.constant(1.0))
    weighted, per_task, _ = losses.multitask_per_example_loss(
        OUTPUTS, _batch(), SPECS, tf.constant(1.0), loss_weights=[0.5, 4.0])
    # rte example: 0.5 * its cross-entropy; sts example: 4 * (0.8 - 0.6)^2.
    np.testing.assert_allclose(weighted.numpy(),
                               [0.5 * GOLD_CE, 4.0 * 0.2 ** 2], rtol=1e-6)
    np.testing.assert_allclose(weighted.numpy(),
                               plain.numpy() * [0.5, 4.0], rtol=1e-6)
    # Logged task losses stay unweighted: comparable across runs.
    np.testing.assert_allclose(per_task["sts"].numpy(), [0, 0.2 ** 2],
                               rtol=1e-6)


def test_temperature():
    t = 2.0
    logits = tf.constant([[2.0, 0.0]])
    teacher = tf.constant([[0.0, 2.0]])
    loss = losses.classification_loss(logits, tf.constant([0]), teacher,
                                      0.0, temperature=t)
    p_teacher = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    log_student = np.array([1.0, 0.0]) - np.log(np.exp([1.0, 0.0]).sum())
    expected = -t * t * np.sum(p_teacher * log_student)
    np.testing.assert_allclose(loss.numpy(), [expected], rtol=1e-6)


def test_gold_weight_schedule():
    assert float(losses.gold_weight(25, 100, True, True, 0.5)) == 0.25
    assert float(losses.gold_weight(150, 100, True, True, 0.5)) == 1.0
    assert float(losses.gold_weight(25, 100, True, False, 0.3)) == \
        pytest.approx(0.7)
    assert float(losses.gold_weight(25, 100, False, True, 0.5)) == 1.0
