"""The layout of a BAM_DIR, the root folder every command works in:

    glue_data/            input: GLUE TSVs (the default glue_dir)
    pretrained_models/    input: encoders found by bare name
    models/<name>/        one model folder (`ModelDir`)
    cache/features/       tokenized features, reused by later runs
    comparisons/<prefix>_<recipe>.{json,txt}   a recipe's table
"""

import os

# The BAM_DIR's folders that bam-tf keeps.
RESERVED_FOLDERS = ("models", "cache", "comparisons", "glue_data",
                    "pretrained_models")


def models_dir(bam_dir):
    return os.path.join(bam_dir, "models")


def model_names(bam_dir):
    """The names of the model folders of `bam_dir`, sorted (none when it
    has no readable models/ folder)."""
    root = models_dir(bam_dir)
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return sorted(n for n in names if os.path.isdir(os.path.join(root, n)))


def model_path(bam_dir, name):
    """Where model `name` of `bam_dir` is."""
    return os.path.join(models_dir(bam_dir), name)


def feature_cache_dir(bam_dir):
    return os.path.join(bam_dir, "cache", "features")


def comparison_base(bam_dir, prefix, recipe):
    """Where a recipe's comparison table goes, without .json / .txt."""
    return os.path.join(bam_dir, "comparisons", f"{prefix}_{recipe}")
