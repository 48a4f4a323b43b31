"""Transformer classifiers whose layers no longer match their config (pruned heads / neurons).

They save like any transformer run; on load, every linear layer is first resized to the shape stored
in the weights file, so a pruned model loads offline from its own folder.
"""

from __future__ import annotations

from emolab.models.registry import register_model
from emolab.models.text import TextClassifierModule, TransformerClassifier


@register_model("transformer-pruned")
class PrunedTransformerClassifier(TransformerClassifier):
    supports_resume = False

    @classmethod
    def from_transformer(cls, model: TransformerClassifier) -> PrunedTransformerClassifier:
        return cls(model.cfg, model.labels, model.module, model.tokenizer)

    @staticmethod
    def fit_state(module: TextClassifierModule, state: dict) -> None:
        from emolab.compression.pruning import fit_shapes

        fit_shapes(module, state)
