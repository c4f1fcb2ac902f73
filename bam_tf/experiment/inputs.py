"""What a run reads, in two steps made once each: `RunSources` (read and
checked before the model folder is written to) and `RunInputs` (the same,
featurized, once the first trial is claimed: a folder that is refused, or
whose trials are all finished, costs no tokenizing)."""

import dataclasses
from typing import Optional

from absl import logging

from bam_tf import config as config_lib
from bam_tf.data.examples import DataError
from bam_tf.data.features import Featurizer
from bam_tf.data.features import cached_features
from bam_tf.data.loading import load_split
from bam_tf.encoders.encoder import debug_tokenizer
from bam_tf.encoders.encoder import debug_vocabulary
from bam_tf.encoders.encoder import debug_vocabulary_texts
from bam_tf.encoders.encoder import load_encoder
from bam_tf.errors import RunError
from bam_tf.experiment.init_source import InitSource
from bam_tf.experiment.teachers import teacher_targets
from bam_tf.experiment.teachers import warn_if_other_encoder
from bam_tf.store import identity as identity_lib
from bam_tf.store.bam_dir import feature_cache_dir
from bam_tf.tasks import get_tasks


@dataclasses.dataclass(frozen=True)
class RunSources:
    """What a run reads, read and checked before its folder is opened:
    the examples of every split, the teacher targets, the tokenizer and
    the run's identity. `featurize` makes the `RunInputs` trials train on.

    Attributes:
        config: the `RunConfig`.
        tasks: its `Task`s, in `config.task_names` order.
        train_examples: [Examples] per task.
        eval_examples: {(task name, split): Examples} of the dev and test
            splits found.
        teachers: {task name: targets aligned with its training examples}
            (distillation only).
        vocabulary: the debug encoder's vocabulary (None for a pretrained
            encoder, whose tokenizer is its own).
        tokenizer: the tokenizer features are made with.
        init_source: the `InitSource` of a Table 3 run, else None.
        identity: the run's identity (`bam_tf.store.identity`).

    Example:

    ```python
    sources = RunSources.read(config)
    folder = open_model_dir(config, identity=sources.identity)
    inputs = sources.featurize()
    ```
    """

    config: config_lib.RunConfig
    tasks: list
    train_examples: list
    eval_examples: dict
    teachers: dict
    vocabulary: Optional[list]
    tokenizer: object
    init_source: Optional[InitSource]
    identity: dict

    @classmethod
    def read(cls, config):
        """Reads and checks every input of `config`: its Table 3 source,
        splits, teacher targets and encoder."""
        tasks = get_tasks(config.task_names)
        source = InitSource(config) if config.init_from_model else None
        init_print = source.check() if source else None
        train_examples, eval_examples = _read_examples(config, tasks)
        teachers = _read_teachers(config, tasks, train_examples)
        if config.debug:
            vocabulary = (source.vocabulary() if source else debug_vocabulary(
                debug_vocabulary_texts(train_examples),
                config.debug_vocab_size))
            tokenizer = debug_tokenizer(vocabulary)
            encoder_print = identity_lib.debug_encoder_fingerprint(config)
        else:
            vocabulary = None
            encoder = _checked_encoder(config, config.pretrained_model)
            tokenizer = encoder.tokenizer
            encoder_print = identity_lib.encoder_fingerprint(encoder)
        if source:
            source.check_encoder(encoder_print)
        identity = identity_lib.build_identity(
            config, identity_lib.data_fingerprints(
                tasks, train_examples, eval_examples),
            teachers, encoder_print, init_print)
        return cls(config=config, tasks=tasks, train_examples=train_examples,
                   eval_examples=eval_examples, teachers=teachers,
                   vocabulary=vocabulary, tokenizer=tokenizer,
                   init_source=source, identity=identity)

    def featurize(self):
        """The `RunInputs`: every split tokenized (from the feature cache
        where the same examples were tokenized before)."""
        config = self.config
        featurizer = Featurizer(self.tokenizer, config.max_seq_length)
        cache = (feature_cache_dir(config.bam_dir)
                 if config.cache_features else None)
        return RunInputs(
            **{f.name: getattr(self, f.name)
               for f in dataclasses.fields(RunSources)},
            train_features=[cached_features(featurizer, e, cache)
                            for e in self.train_examples],
            eval_features={key: cached_features(featurizer, e, cache)
                           for key, e in self.eval_examples.items()})


@dataclasses.dataclass(frozen=True)
class RunInputs(RunSources):
    """`RunSources` with the features of every split: what a trial trains
    and predicts on. `train_features` lie beside `train_examples`,
    `eval_features` beside `eval_examples`.

    Example:

    ```python
    inputs = RunInputs.read(config)
    examples, features = inputs.split(0, "dev")
    ```
    """

    train_features: list = None
    eval_features: dict = None

    @classmethod
    def read(cls, config):
        """`RunSources.read(config).featurize()`."""
        return RunSources.read(config).featurize()

    def split(self, task_id, split):
        """(examples, features) of one split of the task_id-th task."""
        if split == "train":
            return self.train_examples[task_id], self.train_features[task_id]
        key = (self.tasks[task_id].name, split)
        return self.eval_examples[key], self.eval_features[key]

    def dev_splits(self):
        """[(task_id, split)] of the splits scored after training."""
        return [(i, split) for i, task in enumerate(self.tasks)
                for split in task.dev_splits]

    def eval_splits(self):
        """[(task_id, split)] of the dev and test splits found."""
        return [(i, split) for i, task in enumerate(self.tasks)
                for split in task.dev_splits + task.test_splits
                if (task.name, split) in self.eval_examples]


def _read_examples(config, tasks):
    gdir = config_lib.glue_dir(config)
    load = lambda task, split, **kw: load_split(
        task, split, gdir, config.data_source, **kw)
    train = [load(t, "train", double_unordered=config.double_unordered,
                  max_examples=config.max_train_examples) for t in tasks]
    evaluation = {}  # (task, split) -> Examples
    for task in tasks:
        for split in task.dev_splits:
            evaluation[(task.name, split)] = load(task, split)
        for split in task.test_splits:
            try:
                evaluation[(task.name, split)] = load(task, split)
            except DataError as e:
                logging.warning("No %s predictions for %s: %s",
                                split, task.name, e)
    return train, evaluation


def _read_teachers(config, tasks, train_examples):
    """Teacher targets joined to the training examples by id."""
    teachers = dict(config.teachers) if config.distill else {}
    targets = {}
    for task, examples in zip(tasks, train_examples):
        if task.name in teachers:
            targets[task.name] = teacher_targets(
                config.bam_dir, teachers[task.name], task, examples,
                config.teacher_trials)
            warn_if_other_encoder(config, teachers[task.name])
    return targets


def _checked_encoder(config, path):
    """The pretrained encoder at `path`, refused where `config`'s
    max_seq_length exceeds its position limit."""
    encoder = load_encoder(path, config.bam_dir)
    if config.max_seq_length > encoder.position_limit:
        raise RunError(
            f"max_seq_length {config.max_seq_length} exceeds the encoder's "
            f"position limit {encoder.position_limit} ({encoder.source}).")
    return encoder
