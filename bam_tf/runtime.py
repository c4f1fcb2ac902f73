"""`Runtime`: how a run is carried out (devices, checkpoint cadence,
which trials this process takes), never part of what it computes."""

import dataclasses
from typing import Optional

from bam_tf.config import STATIC_PADDINGS
from bam_tf.config import ConfigError
from bam_tf.settings import setting

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How a run is carried out, not what it computes: never part of the
    run's identity (a folder's trials can be run on any hardware, in any
    number of processes, and come out the same). Each setting's help is
    its declaration's (`--help` shows it).

    Example:
    >>> from bam_tf.config import RunConfig
    >>> Runtime(strategy="mirrored", micro_batch_size=8).micro_batches(
    ...     RunConfig(model_name="m", bam_dir="/tmp", task_names=("rte",),
    ...               debug=True), replicas=2)
    8
    """

    strategy: str = setting(
        "default", "runtime", "Hardware: one device, local GPUs, "
        "multi-worker (TF_CONFIG) or TPU.", choices=STRATEGIES)
    tpu: Optional[str] = setting(
        None, "runtime", "TPU name or address (--strategy=tpu).")
    save_checkpoints_steps: Optional[int] = setting(
        None, "runtime", "Checkpoint every N steps (default: by time).")
    save_checkpoints_secs: float = setting(
        300.0, "runtime", "Checkpoint every so many seconds of training.")
    # XLA draws its own dropout masks (docs/hardware.md).
    jit_compile: bool = setting(
        False, "runtime", "XLA-compile the training step (one program per "
        "shape: packed batches then take static shapes; use with "
        "--padding=packed, buckets or max_length).")
    # Memory, not the experiment: the batches, updates and steps stay
    # those of train_batch_size (the sums' order and dropout masks
    # differ). A size at least the replica's batch is the whole batch, so
    # one value serves a recipe whose steps have batches of 32 and 128.
    micro_batch_size: Optional[int] = setting(
        None, "runtime", "Gradient accumulation, for memory: each replica "
        "runs its share of a training batch through the network this many "
        "examples at a time and makes one update from the summed gradients "
        "(the same batches, steps and schedule as without it). Must divide "
        "train_batch_size / replicas, or be at least it (the whole batch at "
        "once).")
    steps_per_execution: int = setting(
        1, "runtime", "Training steps per call into the device (the "
        "original's iterations_per_loop).")
    trials: Optional[tuple] = setting(
        None, "runtime", "Run only these trial numbers, e.g. 3, 4,5 or 1-10 "
        "(default: every unfinished trial of 1..num_trials that no live "
        "process holds). Copies of one command on many GPUs or machines "
        "share the trials out either way.", form="trials")
    claim_timeout_secs: float = setting(
        600.0, "runtime", "A trial claimed by a process on another host "
        "whose heartbeat is older than this is taken over (on the same "
        "host: as soon as that process is gone).")
    heartbeat_secs: float = setting(
        30.0, "runtime", "How often a running trial refreshes its claim "
        "(--claim_timeout_secs must exceed twice it).")

    def validate(self, config, replicas=1, tpu=None):
        """Checks this runtime against `config` on `replicas` devices,
        before any device is touched (a TPU needs static shapes: caught
        here, not after connecting to it). `tpu`: whether the strategy is
        a TPU's (default: `strategy` says)."""
        def check(cond, message):
            if not cond:
                raise ConfigError(message)

        check(self.strategy in STRATEGIES,
              f"--strategy must be one of {STRATEGIES}, got "
              f"{self.strategy!r}.")
        check(self.strategy == "tpu" or not self.tpu,
              f"--tpu={self.tpu} is given without --strategy=tpu.")
        on_tpu = self.strategy == "tpu" if tpu is None else tpu
        check(not on_tpu or config.padding in STATIC_PADDINGS,
              "--strategy=tpu needs static shapes: pass --padding=packed "
              f"or max_length (got --padding={config.padding}).")
        check(self.steps_per_execution >= 1,
              "--steps_per_execution must be >= 1.")
        check(self.save_checkpoints_steps is None
              or self.save_checkpoints_steps >= 1,
              "--save_checkpoints_steps must be >= 1.")
        check(self.save_checkpoints_secs > 0,
              "--save_checkpoints_secs must be > 0.")
        micro = self.micro_batches(config, replicas)
        check(self.micro_batch_size is None or self.micro_batch_size >= 1,
              f"--micro_batch_size={self.micro_batch_size} must be >= 1.")
        check(micro is None or config.train_batch_size % (
            replicas * micro) == 0,
            f"--micro_batch_size={self.micro_batch_size} must be a positive "
            "divisor of each replica's batch: train_batch_size "
            f"{config.train_batch_size} over {replicas} replica(s) (or at "
            "least it: the whole batch at once).")
        check(self.trials is None or (
            len(self.trials) > 0 and all(t >= 1 for t in self.trials)),
            f"--trials must be trial numbers >= 1, got {self.trials}.")
        check(self.heartbeat_secs > 0 and
              self.claim_timeout_secs > 2 * self.heartbeat_secs,
              "--claim_timeout_secs must exceed twice the heartbeat "
              f"({self.heartbeat_secs} s).")

    def micro_batches(self, config, replicas=1):
        """The micro-batch size in force for `config` on `replicas`: None
        where the replica's whole batch fits in one."""
        micro = self.micro_batch_size
        if micro is None or micro >= config.train_batch_size // replicas:
            return None
        return micro

    def groups(self, config, replicas=1):
        """Groups of rows of a packed training batch: one per replica and
        micro-batch."""
        micro = self.micro_batches(config, replicas)
        return replicas * (config.train_batch_size // replicas // micro
                           if micro else 1)

    def record(self, config, replicas=1):
        """How a trial of `config` was run on `replicas`, kept with its
        numbers: replicas and micro-batches sum in another order, and
        micro-batches draw dropout masks per micro-batch, so such trials
        agree to rounding, not bits."""
        return {"strategy": self.strategy, "replicas": int(replicas),
                "micro_batch_size": self.micro_batches(config, replicas),
                "jit_compile": self.jit_compile}

    def trial_numbers(self, num_trials):
        """The trials this process is asked for, in order."""
        if self.trials is None:
            return list(range(1, num_trials + 1))
        return sorted(set(self.trials))
