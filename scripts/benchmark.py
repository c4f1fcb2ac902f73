r"""Training and prediction throughput of bam-tf against keras-hub's
`BertTextClassifier.fit`, in one run, on the same encoder, data, batch size
and optimizer.

    python scripts/benchmark.py --pretrained_model=PATH --glue_dir=DIR \
        --task_names=sst --num_examples=640 --batch_size=32 \
        [--output_json=bench.json]

Prints examples/s and real (unpadded) tokens/s for training and prediction,
peak memory, and the input pipeline's own rate. Other measurements:

    # One multi-task model over the tasks against one single-task model per
    # task, on the same examples: cost per example and per token.
    python scripts/benchmark.py --measure=multi_vs_single \
        --task_names=rte,mrpc,sts,cola,sst --num_examples=160 ...

    # A TensorFlow profile of --steps training steps (TensorBoard's Profile
    # tab), split into matrix products, other model ops, the optimizer
    # update and the input pipeline, and by model part and op type.
    python scripts/benchmark.py --measure=profile --profile_dir=DIR ...

    # The same training step run several ways, each in a fresh process
    # (XLA, threads, oneDNN; diagnostics without the update or dropout).
    python scripts/benchmark.py --measure=variants \
        --variants=default,jit_compile,no_update ...

    # With --hf_python, Hugging Face transformers + PyTorch on the same
    # examples, run right after (benchmarks/hf_pytorch.py, in an
    # interpreter that has torch and transformers).
    python scripts/benchmark.py --hf_python=/path/to/venv/bin/python ...

    # Each batch layout (packed, buckets, max_length, the static packed
    # layout compiled with XLA, ...) on the same examples, each in a fresh
    # process: examples/s, real tokens/s, real over computed tokens.
    python scripts/benchmark.py --measure=layouts \
        --layouts=packed,buckets,max_length ...

    # Training speed and peak memory with the whole batch, then with each
    # micro-batch size (--micro_batch_size of the training scripts), each
    # in a fresh process; every batch padded to --max_seq_length, or with
    # --micro_batch_buckets to its length bucket.
    python scripts/benchmark.py --measure=micro_batches --batch_size=128 \
        --micro_batch_sizes=64,32 --steps=4 ...
"""

import json
import os
import platform
import subprocess
import sys

from bam_tf_scripts import _startup  # noqa: F401  (first)
from absl import app
from absl import flags

from bam_tf.config import PADDINGS
from bam_tf.data.batching import Batching
from bam_tf.encoders.encoder import load_encoder
from bam_tf.errors import BamError
from bam_tf.io_utils import atomic_write_json
from bam_tf.store.ownership import check_output_file
from bam_tf_benchmarks import compute
from bam_tf_benchmarks import harness as benchmark
from bam_tf_benchmarks import profile
from bam_tf_flags import bam_flags

flags.DEFINE_string("pretrained_model", None, "Encoder (folder or preset).")
flags.DEFINE_string("bam_dir", None, "For names under pretrained_models/.")
flags.DEFINE_string("glue_dir", None, "GLUE folder.")
flags.DEFINE_list("task_names", ["sst"], "Tasks (several: multi-task).")
flags.DEFINE_integer("num_examples", 640, "Training examples per task.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.")
flags.DEFINE_integer("steps", None, "Timed steps (default: one pass over "
                     "the examples).")
flags.DEFINE_integer("warmup_steps", 3, "Untimed first steps (tracing).")
flags.DEFINE_integer("keras_hub_steps", None, "Timed keras-hub steps "
                     "(default: as --steps).")
flags.DEFINE_boolean("keras_hub", True, "Also run the keras-hub baseline.")
flags.DEFINE_string("output_json", None, "Write the figures here.")
flags.DEFINE_enum("measure", "throughput",
                  ["throughput", "multi_vs_single", "profile",
                   "micro_batches", "variants", "layouts"],
                  "What to measure (see the module docstring).")
flags.DEFINE_string("profile_dir", None, "Profile folder (--measure=profile).")
flags.DEFINE_list("micro_batch_sizes", [], "Micro-batch sizes to compare "
                  "with the whole batch (--measure=micro_batches; default: "
                  "half and a quarter of --batch_size).")
flags.DEFINE_boolean("micro_batch_buckets", False, "--measure=micro_batches "
                     "with length buckets "
                     "(else every batch padded to --max_seq_length).")
flags.DEFINE_list("variants", ["default", "jit_compile", "inter_op_1",
                               "jit_compile+inter_op_1", "default"],
                  "--measure=variants: ways to run the same training step, "
                  "each in a fresh process, in order (the first again at "
                  "the end shows the drift). The method's: "
                  f"{', '.join(benchmark.VARIANTS)}; diagnostics (not ways "
                  f"to train): {', '.join(benchmark.DIAGNOSTIC_VARIANTS)}.")
flags.DEFINE_list("layouts", ["packed", "buckets", "max_length",
                              "packed_static+jit_compile"],
                  "--measure=layouts: batch layouts to compare, each in a "
                  "fresh process, in order; known: "
                  f"{', '.join(benchmark.LAYOUTS)}.")
flags.DEFINE_boolean("jit_compile", False, "--measure=profile: profile the "
                     "step compiled whole with XLA.")
flags.DEFINE_enum("padding", "packed", list(PADDINGS),
                  "--measure=throughput, profile, multi_vs_single: the "
                  "batch layout of bam-tf's steps (with --jit_compile, "
                  "packed rows take static shapes, as training does).")
flags.DEFINE_string("hf_python", None, "A Python interpreter with torch and "
                    "transformers: also measure Hugging Face + PyTorch on "
                    "the first task's examples, right after "
                    "(--measure=throughput or variants).")
flags.mark_flags_as_required(["pretrained_model", "glue_dir"])
bam_flags.define_task_modules_flag()
flags.declare_key_flag("task_modules")
FLAGS = flags.FLAGS


def _micro_batch_sizes():
    try:
        sizes = [int(s) for s in FLAGS.micro_batch_sizes] or [
            FLAGS.batch_size // d for d in (2, 4)
            if FLAGS.batch_size % d == 0]
    except ValueError:
        sys.exit(f"error: --micro_batch_sizes={FLAGS.micro_batch_sizes}: "
                 "expected integers.")
    bad = [s for s in sizes if s < 1 or FLAGS.batch_size % s]
    if bad:
        sys.exit(f"error: micro-batch sizes {bad} do not divide "
                 f"--batch_size={FLAGS.batch_size}.")
    return sizes


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    bam_flags.import_task_modules(FLAGS.task_modules)
    problem = FLAGS.output_json and check_output_file(
        "--output_json", FLAGS.output_json)
    if problem:
        sys.exit(f"error: {problem}.")
    inputs = dict(pretrained_model=FLAGS.pretrained_model,
                  bam_dir=FLAGS.bam_dir, glue_dir=FLAGS.glue_dir,
                  task_names=FLAGS.task_names,
                  num_examples=FLAGS.num_examples,
                  max_seq_length=FLAGS.max_seq_length)
    # Checked before the encoder and the data are loaded, which takes
    # minutes on real inputs.
    sizes = (_micro_batch_sizes() if FLAGS.measure == "micro_batches"
             else [])
    unknown = sorted(set(FLAGS.variants) - set(benchmark.ALL_VARIANTS))
    if FLAGS.measure == "variants" and unknown:
        sys.exit(f"error: --variants: unknown {unknown}; known: "
                 f"{sorted(benchmark.VARIANTS)} and the diagnostics "
                 f"{sorted(benchmark.DIAGNOSTIC_VARIANTS)}.")
    unknown = sorted(set(FLAGS.layouts) - set(benchmark.LAYOUTS))
    if FLAGS.measure == "layouts" and unknown:
        sys.exit(f"error: --layouts: unknown {unknown}; known: "
                 f"{sorted(benchmark.LAYOUTS)}.")
    if FLAGS.hf_python and FLAGS.measure not in ("throughput", "variants",
                                                 "layouts"):
        sys.exit(f"error: --hf_python compares with --measure=throughput, "
                 f"variants or layouts, not --measure={FLAGS.measure}.")
    if FLAGS.hf_python and not (os.path.isfile(FLAGS.hf_python)
                                and os.access(FLAGS.hf_python, os.X_OK)):
        sys.exit(f"error: --hf_python={FLAGS.hf_python}: not an executable "
                 "file (a Python interpreter with torch and transformers "
                 "is expected).")
    try:
        tasks, examples, encoder, features = benchmark.load_inputs(**inputs)
    except BamError as e:
        sys.exit(f"error: {e}")
    total = sum(len(f) for f in features)
    steps = FLAGS.steps or max(1, total // FLAGS.batch_size)
    results = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "tasks": FLAGS.task_names, "examples": total,
        "batch_size": FLAGS.batch_size,
        "max_seq_length": FLAGS.max_seq_length,
        "input_pipeline_examples_per_s":
            benchmark.input_pipeline_throughput(
                tasks, features, FLAGS.batch_size),
    }
    print(f"input pipeline: {results['input_pipeline_examples_per_s']:.0f} "
          "examples/s", flush=True)
    # Before any training in this process, with nothing else running.
    results["matmul_peak_gflops"] = compute.matmul_peak_gflops()
    print(f"matrix-product peak: {results['matmul_peak_gflops']:.0f} "
          "GFLOP/s (float32, 2048 x 2048 x 2048)", flush=True)
    batching = Batching.on_device(FLAGS.padding, FLAGS.max_seq_length,
                                  jit_compile=FLAGS.jit_compile)
    if FLAGS.measure == "multi_vs_single":
        results["multi_vs_single"] = benchmark.multi_vs_single(
            lambda: load_encoder(FLAGS.pretrained_model,
                                 FLAGS.bam_dir).backbone,
            tasks, features, FLAGS.batch_size, FLAGS.warmup_steps,
            batching=batching)
        return _finish(results, {
            k: v for k, v in results["multi_vs_single"].items()
            if k.startswith("multi_over")})
    if FLAGS.measure == "variants":
        results["variants"] = benchmark.variant_comparison(
            inputs, FLAGS.batch_size, FLAGS.variants, steps,
            FLAGS.warmup_steps)
        _print_runs(results, "variants", "variant", steps)
        return _finish(results, {})
    if FLAGS.measure == "layouts":
        results["layouts"] = benchmark.layout_comparison(
            inputs, FLAGS.batch_size, FLAGS.layouts, steps,
            FLAGS.warmup_steps)
        _print_runs(results, "layouts", "layout", steps, lambda r: (
            f", token efficiency {r['token_efficiency']:.2f}; prediction "
            f"{r['predict_examples_per_s']:.1f} examples/s"))
        return _finish(results, {})
    if FLAGS.measure == "micro_batches":
        results["micro_batches"] = benchmark.micro_batch_comparison(
            inputs, FLAGS.batch_size, [None] + sizes, steps,
            FLAGS.warmup_steps, FLAGS.micro_batch_buckets)
        for r in results["micro_batches"]:
            print(f"micro-batch {r['micro_batch_size']}: {r['train_examples_per_s']:.1f} "
                  f"examples/s ({r['speed_vs_first']:.2f}x), peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB "
                  f"({r['peak_rss_vs_first']:.2f}x)", flush=True)
        return _finish(results, {})
    if FLAGS.measure == "profile":
        if not FLAGS.profile_dir:
            raise app.UsageError("--measure=profile needs --profile_dir.")
        results["bam_tf"] = benchmark.bam_tf_throughput(
            encoder.backbone, tasks, features, FLAGS.batch_size, steps,
            FLAGS.warmup_steps, batching=batching, predict=False,
            profile_dir=FLAGS.profile_dir, jit_compile=FLAGS.jit_compile)
        results["profile"] = profile.read_profile(
            FLAGS.profile_dir, compiled_step=FLAGS.jit_compile)
        p = results["profile"]
        print(f"{p['steps']} profiled steps, {p['step_ms']:.0f} ms each "
              f"(profiling slows them), {p['cpu_ms'] / p['steps']:.0f} ms "
              "of CPU time each in ops and the input pipeline")
        for group in ("split", "by_part", "by_type"):
            print(f"\nCPU time {group.replace('_', ' ')}:")
            for row in p[group]:
                print(f"  {row['percent']:5.1f}%  {row['name']}")
        return _finish(results, {})
    # bam-tf in --padding's layout (default: packed, as training), then
    # each batch padded to its longest example, each on a freshly loaded
    # encoder.
    results["bam_tf"] = benchmark.bam_tf_throughput(
        encoder.backbone, tasks, features, FLAGS.batch_size, steps,
        FLAGS.warmup_steps, batching=batching)
    _add_limit(results["bam_tf"], results["matmul_peak_gflops"])
    print(benchmark.summary_line("bam_tf", results["bam_tf"]), flush=True)
    results["bam_tf_pad_to_longest"] = benchmark.bam_tf_throughput(
        load_encoder(FLAGS.pretrained_model, FLAGS.bam_dir).backbone,
        tasks, features, FLAGS.batch_size, steps, FLAGS.warmup_steps)
    print(benchmark.summary_line("bam_tf_pad_to_longest",
                                 results["bam_tf_pad_to_longest"]),
          flush=True)
    if FLAGS.keras_hub and not tasks[0].is_regression:
        fresh = load_encoder(FLAGS.pretrained_model, FLAGS.bam_dir)
        results["keras_hub"] = benchmark.keras_hub_throughput(
            fresh.backbone, fresh.tokenizer, tasks[0], examples[0],
            FLAGS.batch_size, FLAGS.keras_hub_steps or steps,
            FLAGS.warmup_steps, FLAGS.max_seq_length)
        print(benchmark.summary_line("keras_hub", results["keras_hub"]),
              flush=True)
        results["speedup_vs_keras_hub"] = (
            results["bam_tf"]["train_examples_per_s"]
            / results["keras_hub"]["train_examples_per_s"])
    _hf_pytorch(results, results["bam_tf"], steps)
    _finish(results, {k: v for k, v in results.items()
                      if k.startswith("speedup")})


def _print_runs(results, key, name, steps, more=lambda r: ""):
    """Each fresh-process run of `results[key]` against the machine's limit
    and the first run, then HF + PyTorch against the first (`--hf_python`)."""
    for r in results[key]:
        _add_limit(r, results["matmul_peak_gflops"])
        print(f"{r[name]}: {r['train_examples_per_s']:.1f} examples/s, "
              f"{r['train_tokens_per_s']:.0f} real tokens/s "
              f"({r['speed_vs_first']:.2f}x){more(r)}", flush=True)
    _hf_pytorch(results, results[key][0], steps)


def _add_limit(result, peak_gflops):
    """The step's FLOPs per real token, the compute-bound limit they give
    at the machine's peak, and the fraction of it reached."""
    result.update(compute.limit_summary(
        result["train_tokens_per_s"], result["train_flops_per_real_token"],
        peak_gflops))
    print(f"training: {result['flops_per_real_token'] / 1e6:.1f} MFLOP per "
          f"real token; limit {result['limit_tokens_per_s']:.0f} real "
          f"tokens/s; reached {result['fraction_of_limit']:.2f} of it",
          flush=True)


def _hf_pytorch(results, bam_tf, steps):
    """With --hf_python: benchmarks/hf_pytorch.py on the first task's
    examples in that interpreter, and bam-tf's speed-up over it (`bam_tf`:
    the result it is compared with)."""
    if not FLAGS.hf_python:
        return
    command = [FLAGS.hf_python, "-m", "bam_tf_benchmarks.hf_pytorch",
               f"--pretrained_model={FLAGS.pretrained_model}",
               f"--glue_dir={FLAGS.glue_dir}",
               f"--task_name={FLAGS.task_names[0]}",
               f"--num_examples={FLAGS.num_examples}",
               f"--batch_size={FLAGS.batch_size}", f"--steps={steps}",
               f"--warmup_steps={FLAGS.warmup_steps}",
               f"--max_seq_length={FLAGS.max_seq_length}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        # bam-tf's figures are kept: written before the error ends the run.
        _finish(results, {})
        sys.exit(f"error: {' '.join(command)} failed:\n"
                 f"{done.stderr.strip()[-2000:]}")
    try:
        results["hf_pytorch"] = json.loads(
            done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        _finish(results, {})
        sys.exit(f"error: {' '.join(command)} printed no JSON line last:\n"
                 f"{done.stdout.strip()[-2000:]}")
    results["speedup_vs_hf_pytorch"] = {
        "examples": bam_tf["train_examples_per_s"]
        / results["hf_pytorch"]["train_examples_per_s"],
        "real_tokens": bam_tf["train_tokens_per_s"]
        / results["hf_pytorch"]["train_tokens_per_s"]}
    print(benchmark.summary_line("hf_pytorch", results["hf_pytorch"]))
    print("bam-tf over HF + PyTorch: "
          f"{results['speedup_vs_hf_pytorch']['examples']:.2f}x examples/s",
          flush=True)


def _finish(results, headline):
    if FLAGS.output_json:
        atomic_write_json(FLAGS.output_json, results)
    print(json.dumps({**headline, "input_pipeline_examples_per_s":
                      results["input_pipeline_examples_per_s"]}))
    if FLAGS.output_json:
        print(f"wrote {FLAGS.output_json}")


def run():
    """The console command."""
    _startup.run(main, __name__)


if __name__ == "__main__":
    run()
