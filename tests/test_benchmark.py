"""The benchmark's helpers on hand-made inputs, and its measurements end to
end on a tiny encoder (figures are not asserted: only their bookkeeping)."""

import json
import os
import subprocess
import sys

import pytest

from bam_tf.data.batching import Batching
from bam_tf.data.features import Featurizer
from bam_tf.data.loading import load_split
from bam_tf.tasks import get_tasks
from bam_tf_benchmarks import harness as benchmark
from bam_tf_benchmarks import profile
from conftest import REPO
from conftest import tiny_backbone


def test_untraced_warmup_by_hand():
    lengths = [16, 32, 16, 64, 32, 16, 128]
    # w=1: next two [32, 16] bring 32; w=2: [16, 64] bring 64;
    # w=3: [64, 32] bring nothing new? 64 unseen in [16, 32, 16]: no;
    # w=4: [32, 16] all seen in [16, 32, 16, 64]: 4.
    assert benchmark.untraced_warmup(lengths, 1, 2) == 4
    assert benchmark.untraced_warmup(lengths, 5, 2) == 5  # [16, 128]? no
    # ... 128 is never seen before its step: the limit is returned.
    assert benchmark.untraced_warmup(lengths, 5, 2, limit=5) == 5
    assert benchmark.untraced_warmup([16] * 5, 1, 3) == 1


def test_padding_summary_by_hand():
    import numpy as np
    # Batch 1: lengths 3 and 1 padded to 4 (8 slots, 4 real; longest 3:
    # 6). Batch 2: lengths 2 and 2 padded to 2 (4 slots, 4 real).
    batches = [{"token_ids": np.zeros((2, 4)),
                "padding_mask": np.array([[1, 1, 1, 0], [1, 0, 0, 0]])},
               {"token_ids": np.zeros((2, 2)),
                "padding_mask": np.ones((2, 2))}]
    assert benchmark.padding_summary(batches) == {
        "padded_over_real": 12 / 8, "longest_over_real": 10 / 8,
        "token_efficiency": 8 / 12}
    # The same four examples packed in one group: rows of 4 hold 3 + 1
    # and 2 + 2 (8 slots, all real); longest 3 over 4 examples: 12.
    packed = {"token_ids": np.zeros((1, 2, 4)),
              "packing_ids": np.array([[[1, 1, 1, 2], [3, 3, 4, 4]]]),
              "cls_index": np.zeros((1, 4))}
    assert benchmark.example_lengths(packed).tolist() == [3, 1, 2, 2]
    assert benchmark.padding_summary([packed]) == {
        "padded_over_real": 1.0, "longest_over_real": 12 / 8,
        "token_efficiency": 1.0}


def _plane(lines):
    """A host plane of the XPlane protobuf: {line name: [(event name, op
    type or "", start, duration)]}, times in microseconds."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    plane = xplane_pb2.XPlane(name="/host:CPU")
    ids = {}
    for line_name, events in lines.items():
        line = plane.lines.add(name=line_name)
        for name, kind, start, duration in events:
            if (name, kind) not in ids:
                ids[(name, kind)] = len(ids) + 1
                plane.event_metadata[ids[(name, kind)]].CopyFrom(
                    xplane_pb2.XEventMetadata(id=ids[(name, kind)],
                                              name=name, display_name=kind))
            line.events.add(metadata_id=ids[(name, kind)],
                            offset_ps=start * 10**6,
                            duration_ps=duration * 10**6)
    return plane


def test_step_profile_by_hand():
    attention = ("StatefulPartitionedCall/gradient_tape/bam_model/"
                 "bert_backbone/transformer_layer_0/self_attention_layer/"
                 "MatMul")
    plane = _plane({
        "python": [("multi_step_on_iterator", "", 0, 300),
                   ("multi_step_on_iterator", "", 300, 100),
                   ("EagerExecute", "", 0, 400)],
        "tf_Compute/1": [
            (attention, "_MklBatchMatMulV2", 0, 40),
            ("StatefulPartitionedCall/bam_model/bert_backbone/"
             "transformer_layer_1/feedforward_intermediate_dense/einsum",
             "_MklEinsum", 50, 30),
            ("ExecutorState::Process", "", 0, 100),  # not an op
            ("StatefulPartitionedCall/bam_model/bert_backbone/"
             "transformer_layer_0/feedforward_layer_norm/mul", "Mul",
             100, 5),
            ("CpuExecutable::ExecuteAsyncOnStream", "", 200, 20)],
        "tf_Compute/2": [(attention, "_MklBatchMatMulV2", 10, 15)],
        # Busy 0-10 and 12-20 (nested and overlapping events): 18.
        "tf_data_iterator_resource/1": [("Iterator::Root", "", 0, 10),
                                        ("Iterator::Root::Map", "", 2, 3),
                                        ("Iterator::Root", "", 12, 5),
                                        ("Iterator::Root", "", 15, 5)],
        "tf_numa_-1_Eigen/1": [("fusion.1", "", 200, 20)],  # inside XLA
    })
    summary = profile.step_profile(plane, top=2)
    assert summary["steps"] == 2 and summary["step_ms"] == 200e-3
    # 40 + 30 + 5 + 20 + 15 + 18.
    assert summary["cpu_ms"] == pytest.approx(128e-3)
    split = {r["name"]: r["ms"] * 1e3 for r in summary["split"]}
    assert split == pytest.approx({
        "matrix products": 85.0, "other model ops": 5.0,
        "optimizer update": 20.0, "input pipeline": 18.0})
    by_part = {r["name"]: r["ms"] * 1e3 for r in summary["by_part"]}
    # The layer norm's name is under its feed-forward block.
    assert by_part == pytest.approx({
        "attention (backward)": 55.0, "feed-forward (forward)": 35.0,
        "optimizer update": 20.0, "input pipeline": 18.0})
    assert summary["by_type"][0] == {
        "name": "_MklBatchMatMulV2", "ms": pytest.approx(55e-3),
        "percent": pytest.approx(100 * 55 / 128)}
    assert [r["occurrences"] for r in summary["top_ops"]] == [2, 1]
    # The whole step under XLA: its programs are the step, not the update.
    compiled = profile.step_profile(plane, compiled_step=True)
    split = {r["name"]: r["ms"] * 1e3 for r in compiled["split"]}
    assert split["compiled step (XLA)"] == pytest.approx(20.0)
    assert split["optimizer update"] == 0.0
    with pytest.raises(ValueError, match="multi_step_on_iterator"):
        profile.step_profile(_plane({"tf_Compute/1": []}))


def test_training_flops_by_hand():
    from bam_tf_benchmarks import compute
    backbone = tiny_backbone(hidden=32, layers=2, max_sequence_length=64)
    # Per layer: q, k, v, output (32 x 32 + 32 each), intermediate
    # (32 x 64 + 64), output (64 x 32 + 32), two norms (2 x 32 each);
    # the embeddings' norm (2 x 32); the pooler (32 x 32 + 32).
    layer = 4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32) + 2 * 64
    n = 2 * layer + 64 + (32 * 32 + 32)
    assert compute.non_embedding_parameters(backbone) == n
    # Lengths 3 and 5: context sum l^2 / sum l = 34 / 8.
    assert compute.training_flops_per_real_token(backbone, [3, 5]) == (
        pytest.approx(6 * n + 12 * 2 * 32 * 34 / 8))
    limit = compute.limit_summary(1000.0, 2e6, 100.0)
    assert limit == {"flops_per_real_token": 2e6,
                     "limit_tokens_per_s": pytest.approx(5e4),
                     "fraction_of_limit": pytest.approx(0.02)}


@pytest.fixture(scope="module")
def tiny_features(tiny_glue, tiny_tokenizer):
    tasks = get_tasks(["rte", "mrpc", "sts"])
    featurizer = Featurizer(tiny_tokenizer, 32)
    # As the script loads them: unordered pairs not doubled.
    return tasks, [featurizer.featurize(load_split(
        t, "train", tiny_glue, double_unordered=False)) for t in tasks]


def test_profile_summary(tiny_features, tmp_path):
    tasks, features = tiny_features
    benchmark.bam_tf_throughput(
        tiny_backbone(max_sequence_length=32), tasks[:1], features[:1], 16,
        steps=3, warmup_steps=1, batching=Batching("max_length", 32),
        predict=False,
        profile_dir=str(tmp_path))
    summary = profile.read_profile(str(tmp_path))
    # The real trace's op names are found in each part of a step, each
    # with time measured in it (the names are keras-hub's and Keras's own,
    # and the optimizer's XLA program TensorFlow's: this breaks when they
    # change).
    assert summary["steps"] >= 3 and summary["step_ms"] > 0
    parts = {r["name"]: r["percent"] for r in summary["by_part"]}
    for part in ("attention (forward)", "attention (backward)",
                 "feed-forward (forward)", "optimizer update",
                 "input pipeline"):
        assert parts.get(part, 0.0) > 0.0, (part, parts)
    split = {r["name"]: r["percent"] for r in summary["split"]}
    assert set(split) == set(profile.SPLIT)
    assert all(v > 0 for v in split.values()), split
    assert sum(split.values()) == pytest.approx(100.0)


def test_script_multi_vs_single(tiny_glue, tiny_tokenizer, tmp_path):
    folder = tmp_path / "encoder"
    tiny_backbone(max_sequence_length=32).save_to_preset(str(folder))
    tiny_tokenizer.save_to_preset(str(folder))
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "benchmark.py"),
         f"--pretrained_model={folder}", f"--glue_dir={tiny_glue}",
         "--task_names=rte,cola", "--num_examples=32", "--batch_size=8",
         "--max_seq_length=32", "--warmup_steps=1",
         "--measure=multi_vs_single", f"--output_json={out}"],
        check=True, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    with open(out) as f:
        result = json.load(f)
    comparison = result["multi_vs_single"]
    assert result["examples"] == 64
    singles = comparison["single_task"]
    assert sorted(singles) == ["cola", "rte"]
    # 32 training examples per task, batches of 8: 8 multi-task steps,
    # 4 per single-task model.
    assert comparison["multi_task"]["train_steps"] == 8
    assert all(r["train_steps"] == 4 for r in singles.values())
    pooled = comparison["single_task_pooled"]
    assert pooled["train_seconds"] == pytest.approx(
        sum(r["train_seconds"] for r in singles.values()))
    assert pooled["seconds_per_example"] == pytest.approx(
        pooled["train_seconds"] / (8 * 8))
    assert comparison["multi_over_single_cost_per_example"] == (
        pytest.approx(comparison["multi_task"]["train_seconds"]
                      / pooled["train_seconds"]))
    # Real tokens: at least [CLS] a [SEP] b [SEP] (5) or [CLS] a [SEP] (3)
    # per example, at most every slot of the 32-token batches.
    assert 8 * 8 * 3 <= comparison["multi_task"]["train_real_tokens"] <= (
        8 * 8 * 32)


def _tiny_benchmark(tiny_glue, tiny_tokenizer, tmp_path, *args):
    """benchmark.py on a tiny encoder saved as a preset; (result, JSON)."""
    folder = tmp_path / "encoder"
    tiny_backbone(max_sequence_length=32).save_to_preset(str(folder))
    tiny_tokenizer.save_to_preset(str(folder))
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "benchmark.py"),
         f"--pretrained_model={folder}", f"--glue_dir={tiny_glue}",
         "--num_examples=16", "--batch_size=8", "--max_seq_length=32",
         "--warmup_steps=1", "--steps=2", f"--output_json={out}", *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out) as f:
        return result, json.load(f)


def test_script_micro_batches(tiny_glue, tiny_tokenizer, tmp_path):
    result, data = _tiny_benchmark(
        tiny_glue, tiny_tokenizer, tmp_path, "--task_names=rte,sts",
        "--measure=micro_batches", "--micro_batch_sizes=2")
    runs = data["micro_batches"]
    # The whole batch first (the baseline), then batches of 8 as 4 x 2;
    # each in its own process, so each has its own peak.
    whole, micro = runs
    assert (whole["micro_batch_size"], micro["micro_batch_size"]) == (None, 2)
    assert whole["train_steps"] == micro["train_steps"] == 2
    assert micro["speed_vs_first"] == pytest.approx(
        micro["train_examples_per_s"] / whole["train_examples_per_s"])
    assert micro["peak_rss_vs_first"] == pytest.approx(
        micro["peak_rss_mb"] / whole["peak_rss_mb"])
    # Every batch padded to 32: the same real tokens on both sides.
    assert micro["train_real_tokens"] == whole["train_real_tokens"]
    assert "micro-batch 2:" in result.stdout

    # A missing encoder folder: the sizes must be refused before anything
    # is loaded, so the error is about them and not about the folder.
    bad = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "benchmark.py"),
         f"--pretrained_model={tmp_path / 'missing'}",
         f"--glue_dir={tiny_glue}",
         "--task_names=rte", "--num_examples=16", "--batch_size=8",
         "--measure=micro_batches", "--micro_batch_sizes=3"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert bad.returncode != 0
    assert "micro-batch sizes [3] do not divide --batch_size=8" in bad.stderr


def test_script_layouts_train_the_same_examples(tiny_glue, tiny_tokenizer,
                                                tmp_path):
    result, data = _tiny_benchmark(
        tiny_glue, tiny_tokenizer, tmp_path, "--task_names=rte,sts",
        "--measure=layouts",
        "--layouts=packed,max_length,packed_static+jit_compile")
    packed, padded, static = data["layouts"]
    assert [r["layout"] for r in data["layouts"]] == [
        "packed", "max_length", "packed_static+jit_compile"]
    # The same batches of the mixed stream in each layout: the same real
    # tokens; packed computes fewer than padded to max_seq_length.
    assert packed["train_real_tokens"] == padded["train_real_tokens"] == (
        static["train_real_tokens"])
    assert packed["token_efficiency"] > padded["token_efficiency"]
    assert padded["token_efficiency"] == pytest.approx(
        padded["train_real_tokens"] / (2 * 8 * 32))
    assert static["speed_vs_first"] == pytest.approx(
        static["train_examples_per_s"] / packed["train_examples_per_s"])
    assert "packed_static+jit_compile: " in result.stdout
    assert packed["predict_examples_per_s"] > 0
    bad = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "benchmark.py"),
         f"--pretrained_model={tmp_path / 'encoder'}",
         f"--glue_dir={tiny_glue}", "--measure=layouts", "--layouts=dense"],
        capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "--layouts: unknown ['dense']" in (
        bad.stderr)


def test_script_variants_run_the_same_batches(tiny_glue, tiny_tokenizer,
                                              tmp_path):
    # A stand-in for an interpreter with torch: what it prints is what
    # the script compares with.
    stub = tmp_path / "hf_python"
    stub.write_text("#!/bin/sh\necho 'torch noise'\n"
                    "echo '{\"train_examples_per_s\": 2.0, "
                    "\"train_tokens_per_s\": 10.0}'\n")
    stub.chmod(0o755)
    result, data = _tiny_benchmark(
        tiny_glue, tiny_tokenizer, tmp_path, "--task_names=rte",
        "--measure=variants", "--variants=inter_op_1,onednn_off,jit_compile",
        f"--hf_python={stub}")
    first, third, second = data["variants"]
    assert (first["variant"], second["variant"]) == ("inter_op_1",
                                                     "jit_compile")
    # onednn_off's setting reached its own process, and the next one saw
    # the environment as the first did.
    assert third["environment"]["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert first["environment"]["TF_ENABLE_ONEDNN_OPTS"] != "0"
    assert second["environment"] == first["environment"]
    assert set(first["environment"]) == {"TF_ENABLE_ONEDNN_OPTS",
                                         "XLA_FLAGS"}
    assert data["speedup_vs_hf_pytorch"] == pytest.approx({
        "examples": first["train_examples_per_s"] / 2.0,
        "real_tokens": first["train_tokens_per_s"] / 10.0})
    # The same stream in both processes: the same steps and real tokens.
    assert first["train_steps"] == second["train_steps"] == 2
    assert first["train_real_tokens"] == second["train_real_tokens"]
    assert second["speed_vs_first"] == pytest.approx(
        second["train_examples_per_s"] / first["train_examples_per_s"])
    assert second["fraction_of_limit"] == pytest.approx(
        second["train_tokens_per_s"] / second["limit_tokens_per_s"])
    assert "jit_compile: " in result.stdout
    bad = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "benchmark.py"),
         f"--pretrained_model={tmp_path / 'encoder'}",
         f"--glue_dir={tiny_glue}",
         "--measure=variants", "--variants=fast"],
        capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "--variants: unknown ['fast']" in (
        bad.stderr)
    missing = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "benchmark.py"),
         f"--pretrained_model={tmp_path / 'encoder'}",
         f"--glue_dir={tiny_glue}", f"--hf_python={tmp_path / 'none'}"],
        capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "not an executable file" in (
        missing.stderr)
    ignored = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "benchmark.py"),
         f"--pretrained_model={tmp_path / 'encoder'}",
         f"--glue_dir={tiny_glue}", f"--hf_python={stub}",
         "--measure=micro_batches"],
        capture_output=True, text=True, timeout=300)
    assert ignored.returncode == 1 and (
        "not --measure=micro_batches" in ignored.stderr)
    # HF + PyTorch failing after bam-tf's run: bam-tf's figures are kept.
    stub.write_text("#!/bin/sh\necho 'no torch here' >&2\nexit 3\n")
    out = tmp_path / "bench.json"
    out.unlink()
    failed = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "benchmark.py"),
         f"--pretrained_model={tmp_path / 'encoder'}",
         f"--glue_dir={tiny_glue}", "--task_names=rte", "--num_examples=16",
         "--batch_size=8", "--max_seq_length=32", "--warmup_steps=1",
         "--steps=2", "--measure=variants", "--variants=default",
         f"--hf_python={stub}", f"--output_json={out}"],
        capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and "no torch here" in failed.stderr
    with open(out) as f:
        assert [r["variant"] for r in json.load(f)["variants"]] == [
            "default"]


def test_variant_environment_adds_to_the_users_xla_flags():
    user = {"XLA_FLAGS": "--xla_dump_to=/tmp/x", "TF_ENABLE_ONEDNN_OPTS": "1"}
    assert benchmark.variant_environment("jit_compile+xla_xnnpack", user) == {
        "XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_cpu_use_xnnpack=true"}
    assert benchmark.variant_environment("jit_compile+xla_xnnpack", {}) == {
        "XLA_FLAGS": "--xla_cpu_use_xnnpack=true"}
    # Other variables are the variant's own.
    assert benchmark.variant_environment("onednn_off", user) == {
        "TF_ENABLE_ONEDNN_OPTS": "0"}
    assert benchmark.variant_environment("default", user) == {}


def test_no_update_diagnostic_consumes_every_gradient(tiny_features):
    import numpy as np
    from bam_tf.data import pipeline
    from bam_tf.model.bam_model import BamModel
    from bam_tf.model.optimization import build_optimizer
    from bam_tf.model.schedule import TrainSchedule

    tasks, features = tiny_features
    model = BamModel(tiny_backbone(max_sequence_length=32),
                     [tasks[0].head_spec])
    train, _ = pipeline.train_dataset(tasks[:1], features[:1], 8, 1,
                                      batching=Batching("max_length", 32))
    model(next(iter(train)))
    model.compile(optimizer=build_optimizer(model, model.backbone, 1e-3, 2),
                  schedule=TrainSchedule(total_steps=2, global_batch_size=8))
    before = [w.numpy() for w in model.trainable_weights]
    sink = benchmark._no_update(model)
    model.fit(train, epochs=1, steps_per_epoch=1, verbose=0)
    for w, b in zip(model.trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    assert float(sink.numpy()) != 0.0  # the gradients were computed
