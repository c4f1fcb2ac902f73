"""A run's identity: what decides its numbers, and nothing else.

Two runs with the same identity compute the same trials, so a folder's
trials can be added to by any command with that identity, wherever the
files now are (a moved or copied BAM_DIR, GLUE folder or encoder folder)
and whatever it writes. The identity is

- the experiment section of the configuration (`config.SECTIONS`);
- the encoder by a fingerprint of its weights, architecture and tokenizer
  (the path it was found at is only where it was);
- the data by a fingerprint of the examples of each training and dev split
  (ids, texts, labels: what the feature cache also hashes);
- each teacher's targets by a fingerprint of the arrays read (the teacher's
  name and trials are in the experiment);
- the weights a Table 3 run starts from, by a fingerprint of the file.

It is saved as identity.json in the model folder. A folder written before
identities existed has only config.json: `bam_tf.store.migration` makes
its saved identity from it, and the next start writes identity.json.

Example:

```python
identity = build_identity(config, data_fingerprints(tasks, train, dev),
                          teachers, encoder_fingerprint(encoder))
differences(saved, identity)  # [] or ["experiment.learning_rate", ...]
```
"""

import dataclasses
import hashlib
import json

import numpy as np

from bam_tf import config as config_lib
from bam_tf.data.batching import IDENTITY_PADDING
from bam_tf.data.features import examples_fingerprint

FORMAT = 1


def _sha(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer):
    """Changes whenever the tokenizer could give other ids."""
    settings = tokenizer.get_config()
    for key in ("vocabulary", "name", "dtype", "trainable"):
        settings.pop(key, None)
    return _sha(type(tokenizer).__name__,
                json.dumps(settings, sort_keys=True, default=str),
                "\n".join(tokenizer.get_vocabulary()))


def encoder_fingerprint(encoder):
    """A pretrained encoder's weights (every variable's path, shape and
    float32 values), its architecture and its tokenizer. The same weights
    saved in another format (a keras-hub preset, a Hugging Face folder)
    have the same fingerprint."""
    backbone = encoder.backbone
    settings = backbone.get_config()
    for key in ("name", "dtype", "trainable"):
        settings.pop(key, None)
    h = hashlib.sha256()
    h.update(type(backbone).__name__.encode() + b"\0")
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for variable in backbone.weights:
        value = np.asarray(variable.numpy(), dtype=np.float32)
        h.update(f"\0{variable.path}\0{value.shape}\0".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    h.update(tokenizer_fingerprint(encoder.tokenizer).encode())
    return h.hexdigest()


def debug_encoder_fingerprint(config):
    """The debug encoder is random per trial seed and its vocabulary is
    learned from the training data: both are in the identity already (the
    seed in the experiment, the data by its fingerprint), so its settings
    are what is left to name it."""
    return _sha("debug", config.debug_hidden_size, config.debug_num_layers,
                config.debug_vocab_size, config.max_seq_length)


def targets_fingerprint(targets):
    return _sha(np.asarray(targets, dtype=np.float32).shape,
                np.ascontiguousarray(targets, dtype=np.float32).tobytes())


def file_fingerprint(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_fingerprints(tasks, train_examples, eval_examples):
    """{"task/split": fingerprint} of the training and dev splits:
    `train_examples` per task, `eval_examples` by (task name, split)."""
    prints = {}
    for task, examples in zip(tasks, train_examples):
        prints[f"{task.name}/train"] = examples_fingerprint(examples)
    dev = {(t.name, s) for t in tasks for s in t.dev_splits}
    for key, examples in sorted(eval_examples.items()):
        if key in dev:
            prints["/".join(key)] = examples_fingerprint(examples)
    return prints


def build_identity(config, data_prints, teachers, encoder_print,
                   init_print=None):
    """The identity (a JSON-ready dict) of `config` run on the data of
    `data_prints` (`data_fingerprints`), with `teachers` ({task: targets})
    and the encoder and Table 3 start of those fingerprints."""
    return {
        "format": FORMAT,
        "experiment": experiment_as_read_now(config.section("experiment")),
        "encoder": encoder_print,
        "data": data_prints,
        "teachers": {task: targets_fingerprint(targets)
                     for task, targets in sorted(teachers.items())},
        "init": init_print,
    }


def experiment_as_read_now(saved):
    """A saved experiment section (or a whole earlier config.json) with
    the defaults of keys added since it was written, normalised as
    `RunConfig.to_dict` writes values; keys outside the experiment are
    dropped."""
    defaults = {f.name: f.default for f in dataclasses.fields(
        config_lib.RunConfig) if f.default is not dataclasses.MISSING}
    values = {k: saved.get(k, defaults.get(k))
              for k in config_lib.SECTIONS["experiment"]}
    # Settings of a feature that is off change no number: a teacher's
    # folder is the same run whatever distillation settings a recipe
    # passes to all of its steps.
    for switch, keys in config_lib.INERT_UNLESS.items():
        if not values[switch]:
            for key in keys:
                values[key] = defaults[key]
    # Packed, longest and max_length are layouts of the same batches
    # (`bam_tf.data.batching`): a folder's trials may use any of them.
    values["padding"] = IDENTITY_PADDING.get(values["padding"],
                                             values["padding"])
    fields = config_lib.RunConfig.__dataclass_fields__
    return {key: config_lib.as_saved(fields[key], value)
            for key, value in values.items()}


def experiment_differences(saved, current):
    """The experiment keys in which two saved experiments (or whole
    config.json dicts) differ, defaults filled in for keys added since."""
    old, new = experiment_as_read_now(saved), experiment_as_read_now(current)
    return [k for k in config_lib.SECTIONS["experiment"] if old[k] != new[k]]


def differences(saved, current):
    """The parts in which two identities differ, as dotted names
    ("experiment.learning_rate", "data.rte/train", "encoder", ...)."""
    names = [f"experiment.{k}" for k in experiment_differences(
        saved.get("experiment", {}), current["experiment"])]
    if saved.get("encoder") != current["encoder"]:
        names.append("encoder")
    for part in ("data", "teachers"):
        a, b = saved.get(part) or {}, current[part] or {}
        names += [f"{part}.{k}" for k in sorted(set(a) | set(b))
                  if a.get(k) != b.get(k)]
    if saved.get("init") != current["init"]:
        names.append("init")
    return names
