"""Reads GLUE from TensorFlow Datasets (`--data_source=tfds`) into
`Examples`, the same structure the TSV reader gives."""

import numpy as np

from bam_tf.data.examples import DataError
from bam_tf.data.examples import Examples

_DEFAULT_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def tfds_source(task, split):
    """(builder name, TFDS split) of a task's split."""
    if task.tfds_name is None:
        raise DataError(f"Task {task.name!r} has no TFDS source.")
    name = task.tfds_splits.get(split, _DEFAULT_SPLITS.get(split))
    if name is None:
        raise DataError(
            f"Task {task.name!r}: split {split!r} has no TFDS counterpart.")
    if ":" in name:
        return tuple(name.split(":", 1))
    return task.tfds_name, name


def read_tfds_split(task, split, data_dir=None):
    """Reads one split through `tfds.load`. Example ids are TFDS's `idx`."""
    import tensorflow_datasets as tfds  # heavy; only this source needs it

    builder, tfds_split = tfds_source(task, split)
    try:
        # Never a download at run time (README, "Data"): prepared data
        # only, or this error.
        dataset = tfds.load(builder, split=tfds_split, data_dir=data_dir,
                            shuffle_files=False, download=False)
    except Exception as e:  # not prepared, a damaged folder, ...
        first = (str(e).strip().splitlines() or [""])[0]
        where = data_dir or tfds.core.constants.DATA_DIR
        raise DataError(
            f"TFDS {builder}:{tfds_split} could not be loaded for task "
            f"{task.name!r} from {where} "
            f"({type(e).__name__}: {first}). Prepare it with "
            f"`tfds build {builder} --data_dir={where}` where downloads "
            "work (or copy it there), or use the TSV files "
            "(--data_source=tsv).") from e
    keys = task.tfds_text_keys
    rows = list(tfds.as_numpy(dataset))
    if not rows:
        raise DataError(f"TFDS {builder}:{tfds_split} is empty.")
    rows.sort(key=lambda r: int(r["idx"]))
    eids = np.asarray([int(r["idx"]) for r in rows], dtype=np.int64)
    repeated = eids[1:][eids[1:] == eids[:-1]]
    if len(repeated):
        raise DataError(
            f"TFDS {builder}:{tfds_split}: idx {int(repeated[0])} occurs "
            "more than once; example ids must be unique.")
    text_a = [r[keys[0]].decode("utf-8") for r in rows]
    text_b = ([r[keys[1]].decode("utf-8") for r in rows]
              if len(keys) > 1 else None)
    labels = None
    has_labels = task.splits[split].label is not None
    if has_labels:
        raw = np.asarray([r["label"] for r in rows])
        where = f"TFDS {builder}:{tfds_split}"
        if task.is_regression:
            labels = raw.astype(np.float32)
            lo, hi = task.regression_range
            bad = np.nonzero(~((labels >= lo) & (labels <= hi)))[0]
            if len(bad):
                raise DataError(
                    f"{where}, idx {eids[bad[0]]}: label {labels[bad[0]]} "
                    f"is not in [{lo}, {hi}].")
        else:
            # TFDS's integer labels name these strings (a user's task
            # whose TFDS order is its label_list needs no table).
            names = task.tfds_label_names or task.label_list
            bad = np.nonzero((raw < 0) | (raw >= len(names)))[0]
            if len(bad):
                raise DataError(
                    f"{where}, idx {eids[bad[0]]}: label {raw[bad[0]]} is "
                    f"not one of 0..{len(names) - 1}.")
            # TFDS's label order -> this task's label_list order.
            mapping = np.asarray(
                [task.label_list.index(n) for n in names], dtype=np.int32)
            labels = mapping[raw]
    return Examples(
        task=task.name, split=split, eids=eids, text_a=text_a, text_b=text_b,
        labels=labels, num_rows=int(eids.max()) + 1,
        source=f"tfds:{builder}:{tfds_split}")
