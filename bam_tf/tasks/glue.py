"""The GLUE tasks, declared as data and registered by name.

Layouts are those `download_glue_data.py` writes (nyu-mll/GLUE-baselines);
names follow the original BAM (`sst`, `sts`), folders both the standard names
and the original's lower-case ones.
"""

from bam_tf.tasks.registry import register_task
from bam_tf.tasks.task import SplitFormat as S
from bam_tf.tasks.task import Task

_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
# The original BAM's MNLI label order; TFDS's is given in tfds_label_names.
_MNLI = ("contradiction", "entailment", "neutral")


def _pair_splits(num_fields, a, b, label, test_fields, test_a, test_b):
    return {
        "train": S("train.tsv", num_fields, a, b, label),
        "dev": S("dev.tsv", num_fields, a, b, label),
        "test": S("test.tsv", test_fields, test_a, test_b),
    }


COLA = register_task(Task(
    name="cola", folders=("CoLA", "cola"),
    # CoLA's train and dev have no header (source, label, mark, sentence).
    splits={"train": S("train.tsv", 4, text_a=3, label=1, header=False),
            "dev": S("dev.tsv", 4, text_a=3, label=1, header=False),
            "test": S("test.tsv", 2, text_a=1)},
    label_list=_BINARY, metrics=("mcc", "accuracy"),
    test_splits=("test",), submission_files={"test": "CoLA.tsv"},
    tfds_name="glue/cola", tfds_text_keys=("sentence",)))

SST = register_task(Task(
    name="sst", folders=("SST-2", "sst"),
    splits={"train": S("train.tsv", 2, text_a=0, label=1),
            "dev": S("dev.tsv", 2, text_a=0, label=1),
            "test": S("test.tsv", 2, text_a=1)},
    label_list=_BINARY, metrics=("accuracy",),
    test_splits=("test",), submission_files={"test": "SST-2.tsv"},
    tfds_name="glue/sst2", tfds_text_keys=("sentence",)))

MRPC = register_task(Task(
    name="mrpc", folders=("MRPC", "mrpc"),
    splits=_pair_splits(5, 3, 4, 0, 5, 3, 4),
    label_list=_BINARY, unordered_pair=True, metrics=("accuracy", "f1"),
    test_splits=("test",), submission_files={"test": "MRPC.tsv"},
    tfds_name="glue/mrpc", tfds_text_keys=("sentence1", "sentence2")))

STS = register_task(Task(
    name="sts", folders=("STS-B", "sts"),
    splits=_pair_splits(10, 7, 8, 9, 9, 7, 8),
    regression_range=(0.0, 5.0), unordered_pair=True,
    metrics=("spearman", "pearson"),
    test_splits=("test",), submission_files={"test": "STS-B.tsv"},
    tfds_name="glue/stsb", tfds_text_keys=("sentence1", "sentence2")))

QQP = register_task(Task(
    name="qqp", folders=("QQP", "qqp"),
    splits=_pair_splits(6, 3, 4, 5, 3, 1, 2),
    label_list=_BINARY, metrics=("accuracy", "f1"),
    test_splits=("test",), submission_files={"test": "QQP.tsv"},
    tfds_name="glue/qqp", tfds_text_keys=("question1", "question2")))

MNLI = register_task(Task(
    name="mnli", folders=("MNLI", "mnli"),
    # The gold label is the last field: 12 fields in train, 16 in dev.
    splits={"train": S("train.tsv", 12, 8, 9, -1),
            "dev_matched": S("dev_matched.tsv", 16, 8, 9, -1),
            "dev_mismatched": S("dev_mismatched.tsv", 16, 8, 9, -1),
            "test_matched": S("test_matched.tsv", 10, 8, 9),
            "test_mismatched": S("test_mismatched.tsv", 10, 8, 9),
            "diagnostic": S("diagnostic.tsv", 3, 1, 2, folder="diagnostic")},
    label_list=_MNLI, metrics=("accuracy",),
    dev_splits=("dev_matched", "dev_mismatched"),
    test_splits=("test_matched", "test_mismatched", "diagnostic"),
    submission_files={"test_matched": "MNLI-m.tsv",
                      "test_mismatched": "MNLI-mm.tsv",
                      "diagnostic": "AX.tsv"},
    tfds_name="glue/mnli", tfds_text_keys=("premise", "hypothesis"),
    # TFDS's ClassLabel order (checked against the TFDS glue builder).
    tfds_label_names=("entailment", "neutral", "contradiction"),
    tfds_splits={"dev_matched": "validation_matched",
                 "dev_mismatched": "validation_mismatched",
                 "test_matched": "test_matched",
                 "test_mismatched": "test_mismatched",
                 # The diagnostic set is its own TFDS builder.
                 "diagnostic": "glue/ax:test"}))

QNLI = register_task(Task(
    name="qnli", folders=("QNLI", "qnli"),
    splits=_pair_splits(4, 1, 2, 3, 3, 1, 2),
    label_list=_NLI2, metrics=("accuracy",),
    test_splits=("test",), submission_files={"test": "QNLI.tsv"},
    tfds_name="glue/qnli", tfds_text_keys=("question", "sentence")))

RTE = register_task(Task(
    name="rte", folders=("RTE", "rte"),
    splits=_pair_splits(4, 1, 2, 3, 3, 1, 2),
    label_list=_NLI2, metrics=("accuracy",),
    test_splits=("test",), submission_files={"test": "RTE.tsv"},
    tfds_name="glue/rte", tfds_text_keys=("sentence1", "sentence2")))

WNLI = register_task(Task(
    name="wnli", folders=("WNLI", "wnli"),
    splits=_pair_splits(4, 1, 2, 3, 3, 1, 2),
    label_list=_BINARY, metrics=("accuracy",),
    test_splits=("test",), submission_files={"test": "WNLI.tsv"},
    tfds_name="glue/wnli", tfds_text_keys=("sentence1", "sentence2"),
    in_glue_average=False))
