"""bam-tf: Born-Again Multi-Task Networks (Clark et al., ACL 2019) on
Keras 3 and TensorFlow 2.

The names a notebook needs, imported on first use (so that `import bam_tf`
loads no TensorFlow until one is asked for):

```python
import bam_tf

config = bam_tf.RunConfig.from_dict({**bam_tf.PRESETS["debug"],
    "model_name": "rte-debug", "bam_dir": "bam", "task_names": ["rte"]})
results = bam_tf.train_and_evaluate(config)   # writes bam/models/rte-debug
report = bam_tf.build_report("bam", ["rte-debug"])
print(bam_tf.format_markdown(report))
```

- configuration: `RunConfig`, `PRESETS`, `Runtime`
- training: `train_and_evaluate` (one model folder), `run_recipe` and
  `RECIPES` (the paper's recipes end to end), `format_table`
- the model: `BamModel`, `build_model`, `load_trained_model`
- tasks: `Task`, `SplitFormat`, `register_task`, `get_task`
- results: `ModelDir` (a model folder), `build_report`, `format_markdown`
"""

import importlib
import importlib.metadata

try:
    __version__ = importlib.metadata.version("bam-tf")
except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path
    __version__ = "unknown"

# name -> the module that defines it.
_PUBLIC = {
    "RunConfig": "bam_tf.config",
    "PRESETS": "bam_tf.config",
    "Runtime": "bam_tf.runtime",
    "train_and_evaluate": "bam_tf.experiment.run",
    "run_recipe": "bam_tf.experiment.recipes",
    "RECIPES": "bam_tf.experiment.recipes",
    "format_table": "bam_tf.experiment.recipes",
    "BamModel": "bam_tf.model.bam_model",
    "build_model": "bam_tf.model.factory",
    "load_trained_model": "bam_tf.serving.export",
    "Task": "bam_tf.tasks.task",
    "SplitFormat": "bam_tf.tasks.task",
    "register_task": "bam_tf.tasks.registry",
    "get_task": "bam_tf.tasks.registry",
    "ModelDir": "bam_tf.store.model_dir",
    "build_report": "bam_tf.analysis.report",
    "format_markdown": "bam_tf.analysis.report",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'bam_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
