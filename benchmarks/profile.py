"""Where a training step's time goes, read from the profile that
`tf.profiler.experimental` writes (its `*.xplane.pb`, parsed with the
protobuf module TensorFlow ships, so no profiler plugin is needed).

xprof's `framework_op_stats` table would be the obvious source, but it
keeps only its 500 costliest ops and leaves out XLA programs: the
optimizer update, compiled (`LayerwiseAdamW(jit_update=True)`), and a few
thousand small ops fell outside it, so its shares were wrong.

Times are the durations of the step's ops on TensorFlow's inter-op
threads (an op's intra-op helpers are inside its duration, not counted
again), of each XLA program's run, and the busy time of the input
pipeline's threads; the four shares of `split` are of their sum. It is
called CPU time below for short.
"""

import collections
import glob
import os

# Op types that are matrix products (the FLOPs of `compute`), as TensorFlow
# and its oneDNN rewrites name them.
MATMUL_TYPES = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3",
                "Einsum", "_FusedMatMul", "_MklMatMul", "_MklBatchMatMulV2",
                "_MklBatchMatMulV3", "_MklEinsum", "_MklFusedMatMul",
                "_MklNativeFusedMatMul", "_MklFusedBatchMatMulV2")

# The event of one run of a compiled XLA program on the thread that
# launched it.
XLA_RUN = "CpuExecutable::ExecuteAsyncOnStream"

SPLIT = ("matrix products", "other model ops", "optimizer update",
         "input pipeline")


def op_part(name):
    """Which part of the model or step an op of the training step belongs
    to, from its name (keras-hub's and Keras's layer names)."""
    lowered = name.lower()
    if lowered.startswith("iterator::"):
        return "input pipeline"
    if any(key in lowered for key in ("optimizer", "adam_w", "adamw",
                                      "assignvariable")):
        return "optimizer update"
    direction = "backward" if "gradient_tape" in lowered else "forward"
    for key, part in (("embedding", "embeddings"),
                      ("self_attention", "attention"),
                      ("feedforward", "feed-forward"),
                      ("transformer_layer", "layer norms and residuals"),
                      ("pooled", "pooler"), ("_head", "heads"),
                      ("_dropout", "heads")):
        if key in lowered:
            return f"{part} ({direction})"
    return f"other ({direction})"


def host_plane(profile_dir):
    """The host CPU plane of the newest profile in `profile_dir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(os.path.join(
        profile_dir, "plugins", "profile", "*", "*.xplane.pb")))
    if not paths:
        raise FileNotFoundError(f"{profile_dir}: no profile written.")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    for plane in space.planes:
        if plane.name == "/host:CPU":
            return plane
    raise ValueError(f"{paths[-1]}: no /host:CPU plane.")


def _busy_ps(events):
    """Time covered by the union of the events' intervals."""
    busy, end = 0, None
    for start, stop in sorted((e.offset_ps, e.offset_ps + e.duration_ps)
                              for e in events):
        if end is None or start > end:
            busy += stop - start
            end = stop
        elif stop > end:
            busy += stop - end
            end = stop
    return busy


def step_profile(plane, step_event="multi_step_on_iterator", top=15,
                 compiled_step=False):
    """The step's time from a host plane (`host_plane`): the number of
    steps and their mean wall time (counting Keras's last call, which
    only finds the input exhausted: one more than the steps run), the
    `SPLIT` shares, shares by model
    part and by op type, and the costliest ops.

    XLA programs count as the optimizer update, the only one a default
    training step compiles; with `compiled_step` (the whole step under
    XLA, `jit_compile`) they are the step itself, reported as one
    "compiled step (XLA)" share that the names cannot split.
    """
    names = plane.event_metadata
    steps = []
    ops = []  # (name, type, picoseconds)
    pipeline_ps = 0
    for line in plane.lines:
        if line.name.startswith("tf_data"):
            pipeline_ps += _busy_ps(line.events)
            continue
        if not line.name.startswith("tf_Compute"):
            steps += [e for e in line.events
                      if names[e.metadata_id].name == step_event]
            continue
        for e in line.events:
            meta = names[e.metadata_id]
            if meta.display_name:  # a TensorFlow op: its type
                ops.append((meta.name, meta.display_name, e.duration_ps))
            elif meta.name == XLA_RUN:
                ops.append(("XLA program", "XLA program", e.duration_ps))
    if not steps:
        raise ValueError(f"no {step_event!r} events: not a profile of "
                         "Keras training steps.")
    split = collections.Counter({part: 0 for part in SPLIT})
    by_part = collections.Counter()
    by_type = collections.Counter()
    for name, kind, ps in ops:
        if kind == "XLA program":
            part = ("compiled step (XLA)" if compiled_step
                    else "optimizer update")
            share = part
        else:
            part = op_part(name)
            share = (part if part in SPLIT else "matrix products"
                     if kind in MATMUL_TYPES else "other model ops")
        split[share] += ps
        by_part[part] += ps
        by_type[kind] += ps
    split["input pipeline"] += pipeline_ps
    by_part["input pipeline"] += pipeline_ps
    total = sum(split.values()) or 1

    def shares(counter, limit=None):
        return [{"name": k, "ms": v / 1e9, "percent": 100.0 * v / total}
                for k, v in counter.most_common(limit)]
    costliest = collections.Counter()
    occurrences = collections.Counter()
    for name, kind, ps in ops:
        costliest[(name, kind)] += ps
        occurrences[(name, kind)] += 1
    return {
        "steps": len(steps),
        "step_ms": sum(e.duration_ps for e in steps) / len(steps) / 1e9,
        "cpu_ms": total / 1e9,
        "split": shares(split), "by_part": shares(by_part),
        "by_type": shares(by_type, top),
        "top_ops": [{"name": name, "type": kind,
                     "occurrences": occurrences[(name, kind)],
                     "ms": ps / 1e9, "percent": 100.0 * ps / total}
                    for (name, kind), ps in costliest.most_common(top)]}


def read_profile(profile_dir, compiled_step=False):
    """`step_profile` of the newest profile in `profile_dir`."""
    return step_profile(host_plane(profile_dir),
                        compiled_step=compiled_step)
