"""Table 3 of the paper: single-task fine-tuning that starts from a
multi-task model's trained weights."""

from bam_tf.model.factory import build_model
from bam_tf.training.checkpoints import load_weights


def start_from_weights(model, weights_path, source_specs, batch):
    """Sets `model`'s backbone, and the heads of the tasks it shares with
    the source, to the weights at `weights_path`, saved from a `BamModel`
    of the same backbone with heads `source_specs`. `batch` (any input
    batch) builds the source model."""
    backbone = model.backbone
    source = build_model(
        backbone.__class__.from_config(backbone.get_config()), source_specs,
        batch)
    load_weights(source, weights_path)
    backbone.set_weights(source.backbone.get_weights())
    for name in model.heads:
        if name in source.heads:
            model.heads[name].set_weights(source.heads[name].get_weights())
