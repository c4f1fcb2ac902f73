"""A trained student as a keras-hub preset folder: the multi-task encoder
and its tokenizer as keras-hub saves them, and BAM's task heads beside.

    keras_hub.models.Backbone.from_preset(folder)    # the trained encoder
    keras_hub.models.Tokenizer.from_preset(folder)
    --pretrained_model=folder                         # a new bam-tf run

`bam_heads.json` says what each head reads and computes, and
`bam_heads.safetensors` holds its weights (`<task>/kernel`, `<task>/bias`),
so that code without bam-tf can apply them:

    classification: logits = v @ kernel + bias, probabilities = softmax
    regression:     score = lo + (hi - lo) * sigmoid(v @ kernel + bias)

where v is the backbone's `pooled_output` (BERT, ALBERT) or the first
token of its `sequence_output` (the other families).
"""

import os

import numpy as np
from safetensors.numpy import save as safetensors_bytes

from bam_tf.io_utils import atomic_open
from bam_tf.io_utils import atomic_write_json
from bam_tf.serving.task_table import TASKS_FILE
from bam_tf.serving.task_table import task_table

HEADS_FILE = "bam_heads.json"
HEAD_WEIGHTS_FILE = "bam_heads.safetensors"


def head_arrays(model):
    """{"<task>/kernel": [hidden, labels], "<task>/bias": [labels]} of a
    BamModel, as float32 numpy."""
    arrays = {}
    for name, _, _ in model.task_specs:
        kernel, bias = model.heads[name].get_weights()
        arrays[f"{name}/kernel"] = np.asarray(kernel, np.float32)
        arrays[f"{name}/bias"] = np.asarray(bias, np.float32)
    return arrays


def heads_description(model, tasks, max_seq_length):
    """What `bam_heads.json` holds: the sentence vector each head reads,
    and per task its kind, labels or range, and whether it reads a pair."""
    table = task_table(tasks)
    return {
        "family": model.family.name,
        "sentence_vector": model.family.sentence_vector,
        "max_seq_length": max_seq_length,
        "heads": {t.name: {**table[t.name], "kind": "regression"
                           if t.is_regression else "classification"}
                  for t in tasks}}


def write_keras_hub_preset(model, tokenizer, tasks, max_seq_length,
                           export_dir, source):
    """Writes the preset folder `export_dir` (see the module docstring);
    `source` (the model folder and trial) goes into the task table."""
    os.makedirs(export_dir, exist_ok=True)
    model.backbone.save_to_preset(export_dir)
    tokenizer.save_to_preset(export_dir)
    atomic_write_json(os.path.join(export_dir, HEADS_FILE),
                      heads_description(model, tasks, max_seq_length))
    with atomic_open(os.path.join(export_dir, HEAD_WEIGHTS_FILE), "wb") as f:
        f.write(safetensors_bytes(head_arrays(model)))
    atomic_write_json(os.path.join(export_dir, TASKS_FILE), {
        **source, "max_seq_length": max_seq_length,
        "tasks": task_table(tasks)})
    return export_dir

