"""The benchmark's helpers on hand-made inputs, and its measurements end to
end on a tiny encoder (figures are not asserted: only their bookkeeping)."""

import json
import os
import subprocess
import sys

import pytest

from bam_tf.data.features import Featurizer
from bam_tf.data.loading import load_split
from bam_tf.tasks import get_tasks
from bam_tf_benchmarks import harness as benchmark
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


def _row(type_, name, self_time, occurrences=1):
    values = {"rank": 0, "host_or_device": "Host", "type": type_,
              "operation": name, "occurrences": occurrences,
              "total_time": self_time, "total_self_time": self_time}
    return {"c": [{"v": values[k]} for k in values]}


def test_summarize_op_stats_by_hand():
    cols = [{"id": k} for k in ("rank", "host_or_device", "type", "operation",
                                "occurrences", "total_time",
                                "total_self_time")]
    rows = [
        _row("IDLE", "IDLE", 1000.0),
        _row("BatchMatMulV2", "StatefulPartitionedCall/gradient_tape/"
             "bam_model/bert_backbone/transformer_layer_0/"
             "self_attention_layer/MatMul", 40.0),
        _row("BatchMatMulV2", "StatefulPartitionedCall/bam_model/"
             "bert_backbone/transformer_layer_1/self_attention_layer/MatMul",
             20.0),
        _row("Einsum", "StatefulPartitionedCall/bam_model/bert_backbone/"
             "transformer_layer_0/feedforward_intermediate_dense/einsum",
             30.0, occurrences=3),
        _row("ResourceApplyAdam", "StatefulPartitionedCall/adamw/update",
             10.0),
        _row("Mul", "StatefulPartitionedCall/bam_model/bert_backbone/"
             "transformer_layer_0/feedforward_layer_norm/mul", 5.0),
        _row("IteratorGetNext", "Iterator::Root::Prefetch", 5.0)]
    summary = benchmark.summarize_op_stats([{"cols": cols, "rows": rows}],
                                           top=2)
    assert summary["self_time_us"] == 110.0  # idle left out
    by_part = {r["name"]: r["self_time_us"] for r in summary["by_part"]}
    assert by_part == {"attention (backward)": 40.0,
                       "feed-forward (forward)": 35.0,
                       "attention (forward)": 20.0,
                       "optimizer update": 10.0, "input pipeline": 5.0}
    # The four shares: 40 + 20 + 30 of matrix products, the layer
    # norm's 5, the update's 10, the iterator's 5.
    split = {r["name"]: r["self_time_us"] for r in summary["split"]}
    assert split == {"matrix products": 90.0, "other model ops": 5.0,
                     "optimizer update": 10.0, "input pipeline": 5.0}
    assert summary["split"][0]["percent"] == pytest.approx(100 * 90 / 110)
    assert [(r["name"], r["self_time_us"]) for r in summary["by_type"]] == [
        ("BatchMatMulV2", 60.0), ("Einsum", 30.0)]
    assert [r["self_time_us"] for r in summary["top_ops"]] == [40.0, 30.0]
    assert summary["top_ops"][1]["occurrences"] == 3


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
    pytest.importorskip("xprof")
    tasks, features = tiny_features
    benchmark.bam_tf_throughput(
        tiny_backbone(max_sequence_length=32), tasks[:1], features[:1], 16,
        steps=3, warmup_steps=1, sequence_length=32, predict=False,
        profile_dir=str(tmp_path))
    summary = benchmark.read_profile(str(tmp_path))
    # The real trace's op names are found in each part of a step, each
    # with time measured in it (the names are keras-hub's and Keras's own:
    # this breaks when they change).
    parts = {r["name"]: r["percent"] for r in summary["by_part"]}
    for part in ("attention (forward)", "attention (backward)",
                 "feed-forward (forward)", "optimizer update"):
        assert parts.get(part, 0.0) > 0.0, (part, parts)


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


def test_script_variants_run_the_same_batches(tiny_glue, tiny_tokenizer,
                                              tmp_path):
    result, data = _tiny_benchmark(
        tiny_glue, tiny_tokenizer, tmp_path, "--task_names=rte",
        "--measure=variants", "--variants=inter_op_1,jit_compile")
    first, second = data["variants"]
    assert (first["variant"], second["variant"]) == ("inter_op_1",
                                                     "jit_compile")
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
