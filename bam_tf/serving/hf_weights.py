"""A keras-hub backbone's weights under Hugging Face's names and layouts:
the inverse of keras-hub's own Hugging Face converters.

keras-hub converts a Hugging Face folder by calling, per weight,
`loader.port_weight(keras_variable, hf_key, hook_fn)`, where `hook_fn`
turns the Hugging Face tensor into the Keras layout (a transpose, a
reshape into attention heads, RoBERTa's skipped position rows). Rather than
write that table out again for export, `hf_state_dict` runs the
converter itself with a loader that records those calls, then inverts
each one: it applies the hook to a tensor of element indices shaped as
the Hugging Face tensor, which says where every element of the Keras
variable comes from. So the mapping is keras-hub's, for every family it
converts, and a change there changes export with it; a round trip
(`tests/test_hf_export.py`) checks that loading the export back gives
the same weights.
"""

import numpy as np

from bam_tf.errors import BamError


class HfExportError(BamError):
    pass


# The converter module of each family (keras-hub's), and the prefix its
# ForSequenceClassification model puts before the encoder's weights.
CONVERTERS = {
    "bert": ("convert_bert", "bert."),
    "roberta": ("convert_roberta", ""),
    "distil_bert": ("convert_distilbert", ""),
    "albert": ("convert_albert", ""),
}


class _Recorder:
    """Stands in for keras-hub's SafetensorLoader: records what goes where.

    `get_tensor` answers only the BERT converter's probe for the TF1
    LayerNorm names ("gamma"/"beta"): refusing it selects Hugging Face's
    own "weight"/"bias"."""

    def __init__(self):
        self.ports = []

    def port_weight(self, keras_variable, hf_weight_key, hook_fn=None):
        self.ports.append((keras_variable, hf_weight_key, hook_fn))

    def get_tensor(self, hf_weight_key):
        raise KeyError(hf_weight_key)


def _candidate_shapes(variable, dims):
    """Hugging Face shapes `variable` can come from: a bias or a norm's
    scale is a vector; a linear layer's weight is [out, in], the hidden
    size on one side and a model dimension (hidden, intermediate, ALBERT's
    embedding size) on the other; an embedding table is [rows, dimension],
    with a few more rows where the converter skips some (RoBERTa's
    reserved positions)."""
    keras_shape = tuple(variable.shape)
    size = int(np.prod(keras_shape))
    hidden = dims[0]
    if variable.path.endswith("kernel"):
        shapes = [s for d in sorted(set(dims)) if hidden * d == size
                  for s in ((hidden, d), (d, hidden))]
    elif variable.path.endswith("embeddings"):
        shapes = [(size // d, d) for d in sorted(set(dims))
                  if size % d == 0]
        if len(keras_shape) == 2:
            shapes += [(keras_shape[0] + extra, keras_shape[1])
                       for extra in range(1, 5)]
    else:
        shapes = [(size,)]
    return list(dict.fromkeys(shapes))


def _source_index(variable, hf_key, hook, dims):
    """(hf_shape, index): `index[k]` is the flat position in the Hugging
    Face tensor of element k of `variable` (flattened)."""
    keras_shape = tuple(variable.shape)
    found = []
    for shape in _candidate_shapes(variable, dims):
        probe = np.arange(int(np.prod(shape))).reshape(shape)
        try:
            index = probe if hook is None else hook(probe, list(keras_shape))
            index = np.asarray(index)
        except (ValueError, IndexError):
            continue
        if index.shape == keras_shape and len(np.unique(index)) == (
                index.size):
            found.append((shape, index.reshape(-1)))
    if not found:
        raise HfExportError(
            f"{variable.path}: no Hugging Face layout of {hf_key} maps to "
            f"its shape {keras_shape} through keras-hub's converter.")
    if len({(s, i.tobytes()) for s, i in found}) > 1:
        raise HfExportError(
            f"{variable.path}: {hf_key} has several layouts that map to "
            f"{keras_shape}: {[s for s, _ in found]}.")
    return found[0]


def hf_state_dict(backbone, family, hf_config):
    """{Hugging Face key: float32 numpy array} of `backbone`'s weights, in
    the layout keras-hub's converter for `family` reads (`hf_config` is
    the Hugging Face config it would be given)."""
    if family.name not in CONVERTERS:
        raise HfExportError(
            f"{family.name}: keras-hub has no Hugging Face converter for "
            f"this family; export to Hugging Face is for "
            f"{', '.join(sorted(CONVERTERS))}.")
    import importlib
    module, prefix = CONVERTERS[family.name]
    converter = importlib.import_module(
        f"keras_hub.src.utils.transformers.{module}")
    recorder = _Recorder()
    converter.convert_weights(backbone, recorder, hf_config)
    # The hidden size first: every linear layer has it on one side.
    dims = [backbone.hidden_dim] + [
        d for d in (getattr(backbone, "embedding_dim", None),
                    getattr(backbone, "intermediate_dim", None)) if d]
    state = {}
    for variable, key, hook in recorder.ports:
        shape, index = _source_index(variable, key, hook, dims)
        name = key if key.startswith(prefix) else prefix + key
        flat = state.get(name)
        if flat is None:
            flat = np.zeros(int(np.prod(shape)), np.float32)
        values = np.asarray(variable.numpy(), np.float32).reshape(-1)
        flat[index] = values
        state[name] = flat.reshape(shape)
    covered = {id(v) for v, _, _ in recorder.ports}
    missed = [v.path for v in backbone.weights if id(v) not in covered]
    if missed:
        raise HfExportError(
            f"keras-hub's {family.name} converter ports no Hugging Face "
            f"weight into {missed}: they would be lost.")
    return state
