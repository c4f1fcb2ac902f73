"""Everything a run reads before it trains: every split's examples and
features, and the teachers' targets, read and checked once."""

import os

from absl import logging

from bam_tf import config as config_lib
from bam_tf.data.examples import DataError
from bam_tf.data.features import Featurizer
from bam_tf.data.features import cached_features
from bam_tf.data.loading import load_split
from bam_tf.encoders.encoder import debug_vocabulary_texts
from bam_tf.experiment.model_dir import ModelDir
from bam_tf.experiment.model_dir import ModelDirError
from bam_tf.experiment.teachers import teacher_targets


class RunData:
    """Examples and features of every split a run needs, built once.

    Example:
    >>> data = RunData(config, get_tasks(config.task_names))
    >>> data.featurize(encoder.tokenizer)
    >>> examples, features = data.split(0, "dev")
    """

    def __init__(self, config, tasks):
        self.config = config
        self.tasks = tasks
        gdir = config_lib.glue_dir(config)
        load = lambda task, split, **kw: load_split(
            task, split, gdir, config.data_source, **kw)
        self.train_examples = [
            load(t, "train", double_unordered=config.double_unordered,
                 max_examples=config.max_train_examples) for t in tasks]
        self.eval_examples = {}  # (task, split) -> Examples
        for task in tasks:
            for split in task.dev_splits:
                self.eval_examples[(task.name, split)] = load(task, split)
            for split in task.test_splits:
                try:
                    self.eval_examples[(task.name, split)] = load(task, split)
                except DataError as e:
                    logging.warning("No %s predictions for %s: %s",
                                    split, task.name, e)
        # Teacher targets joined to the training examples by id, read once
        # and checked before any training starts.
        self.teachers = {}
        teachers = dict(config.teachers) if config.distill else {}
        for task, examples in zip(tasks, self.train_examples):
            if task.name in teachers:
                self.teachers[task.name] = teacher_targets(
                    config.bam_dir, teachers[task.name], task, examples,
                    config.teacher_trials)
                warn_if_other_encoder(config, teachers[task.name])
        self.train_features = None  # set by featurize, once per run
        self.eval_features = None

    def vocabulary_texts(self):
        return debug_vocabulary_texts(self.train_examples)

    def featurize(self, tokenizer):
        featurizer = Featurizer(tokenizer, self.config.max_seq_length)
        cache = (os.path.join(self.config.bam_dir, "cache", "features")
                 if self.config.cache_features else None)
        self.train_features = [cached_features(featurizer, e, cache)
                               for e in self.train_examples]
        self.eval_features = {key: cached_features(featurizer, e, cache)
                              for key, e in self.eval_examples.items()}

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

    def output_splits(self, trial):
        """[(task_id, split)] a trial writes predictions of: train for the
        first n_writes_distill trials, dev and test for the first
        n_writes_test."""
        config = self.config
        splits = []
        for task_id, task in enumerate(self.tasks):
            if trial <= config.n_writes_distill:
                splits.append((task_id, "train"))
            if trial <= config.n_writes_test:
                splits += [(task_id, split)
                           for split in task.dev_splits + task.test_splits
                           if (task.name, split) in self.eval_examples]
        return splits


def warn_if_other_encoder(config, teacher_model):
    """Born-again students share their teachers' architecture (paper
    section 3); another encoder is allowed, but said."""
    try:
        teacher = ModelDir(config.bam_dir, teacher_model).read_saved_config()
    except ModelDirError:
        return
    if teacher is None:
        return
    mine = (config.debug, config.pretrained_model)
    theirs = (teacher.get("debug"), teacher.get("pretrained_model"))
    if mine[0] != theirs[0] or (not mine[0] and os.path.basename(
            str(mine[1]).rstrip("/")) != os.path.basename(
                str(theirs[1]).rstrip("/"))):
        logging.warning(
            "Teacher %s was trained from encoder %s, the student %s uses %s: "
            "not born-again distillation (same architecture) but "
            "distillation across encoders.", teacher_model,
            "debug" if theirs[0] else theirs[1], config.model_name,
            "debug" if mine[0] else mine[1])
