"""Encoder families: what data, model and optimizer need to know about a
keras-hub text backbone beyond its weights.

Each family says how a pair is packed (`[CLS] a [SEP] b [SEP]` with segment
ids, or RoBERTa's `<s> a </s></s> b </s>` without), which sentence vector the
heads read (the pooled output where pretraining trained a pooler, the first
token's vector otherwise, as the family's own keras-hub classifier does),
and how variables map to depths for layer-wise learning rates.
"""

import dataclasses
import re

import keras_hub

from bam_tf.errors import BamError


class FamilyError(BamError):
    pass


@dataclasses.dataclass(frozen=True)
class Family:
    """One encoder family.

    Attributes:
        name: the family's name, as in messages and the README's table.
        backbone: the keras-hub backbone class name.
        tokenizer: the keras-hub tokenizer class name.
        hf_model_types: Hugging Face `model_type`s of its checkpoints.
        hf_convertible: whether keras-hub converts its Hugging Face folders.
        segment_ids: whether the backbone reads segment ids.
        sentence_vector: "pooled" (the backbone's trained pooler) or
            "first_token" (the first token's final hidden state).
        double_separator: RoBERTa's `</s></s>` between the two texts.
        layer_pattern: a regex whose group 1 is a transformer layer's index
            in a variable path.
        shared_layers: ALBERT: layer groups shared across depths; the
            pattern's group 1 is then the group index.
    """

    name: str
    backbone: str
    tokenizer: str
    hf_model_types: tuple
    hf_convertible: bool
    segment_ids: bool
    sentence_vector: str
    double_separator: bool = False
    layer_pattern: str = r"(?:^|/)transformer_layer_(\d+)/"
    shared_layers: bool = False

    def backbone_inputs(self):
        return (("token_ids", "segment_ids", "padding_mask")
                if self.segment_ids else ("token_ids", "padding_mask"))

    def special_ids(self, tokenizer):
        """(start, separator, end, pad) token ids of a packed pair."""
        if self.double_separator:
            end = tokenizer.end_token_id
            return tokenizer.start_token_id, [end, end], end, (
                tokenizer.pad_token_id)
        return (tokenizer.cls_token_id, tokenizer.sep_token_id,
                tokenizer.sep_token_id, tokenizer.pad_token_id)

    def depth(self, path, num_layers, num_groups=1):
        """Depth from the top of a backbone variable: 1 for the pooler,
        num_layers + 1 - i for layer i (0-based), num_layers + 2 for the
        embeddings and anything below the first layer.

        A shared ALBERT group serving layers [g L/G, (g + 1) L/G) takes the
        depth of the highest layer it serves: its rate is never below that
        of an unshared layer at the same place.
        """
        if path.startswith("pooled_dense/") or "/pooled_dense/" in path:
            return 1
        match = re.search(self.layer_pattern, path)
        if not match:
            return num_layers + 2
        index = int(match.group(1))
        if self.shared_layers:
            index = (index + 1) * num_layers // num_groups - 1
        return num_layers + 1 - index


FAMILIES = {f.name: f for f in (
    Family("bert", "BertBackbone", "BertTokenizer", ("bert",), True,
           segment_ids=True, sentence_vector="pooled"),
    Family("roberta", "RobertaBackbone", "RobertaTokenizer",
           ("roberta",), True, segment_ids=False,
           sentence_vector="first_token", double_separator=True),
    # The discriminator's pooler is not pretrained (no next-sentence task).
    Family("electra", "ElectraBackbone", "ElectraTokenizer", ("electra",),
           False, segment_ids=True, sentence_vector="first_token"),
    Family("deberta_v3", "DebertaV3Backbone", "DebertaV3Tokenizer",
           ("deberta-v2",), False, segment_ids=False,
           sentence_vector="first_token",
           layer_pattern=r"(?:^|/)disentangled_attention_encoder_layer_(\d+)/"),
    Family("distil_bert", "DistilBertBackbone", "DistilBertTokenizer",
           ("distilbert",), True, segment_ids=False,
           sentence_vector="first_token"),
    # Sentence-order prediction trains ALBERT's pooler.
    Family("albert", "AlbertBackbone", "AlbertTokenizer", ("albert",), True,
           segment_ids=True, sentence_vector="pooled",
           layer_pattern=r"(?:^|/)group_(\d+)_inner_layer_\d+/",
           shared_layers=True),
)}


def _family_by_class(obj, role):
    """The family whose `role` ("backbone" or "tokenizer") class `obj` is
    an instance of (subclasses included)."""
    for family in FAMILIES.values():
        if isinstance(obj, getattr(keras_hub.models, getattr(family, role))):
            return family
    raise FamilyError(
        f"{type(obj).__name__}: not the {role} of a supported encoder "
        f"family; bam-tf supports {sorted(FAMILIES)}.")


def family_of(backbone):
    """The family of a keras-hub backbone."""
    return _family_by_class(backbone, "backbone")


def family_of_tokenizer(tokenizer):
    """The family of a keras-hub tokenizer."""
    return _family_by_class(tokenizer, "tokenizer")


def family_of_hf(model_type):
    """The family of a Hugging Face `model_type`, or None."""
    for family in FAMILIES.values():
        if model_type in family.hf_model_types:
            return family
    return None


def check_pair(backbone, tokenizer):
    """The family of a backbone and tokenizer that belong together."""
    family = family_of(backbone)
    expected = getattr(keras_hub.models, family.tokenizer)
    if not isinstance(tokenizer, expected):
        raise FamilyError(
            f"A {family.name} backbone needs a {family.tokenizer}, not a "
            f"{type(tokenizer).__name__}.")
    return family
