"""Transformer classifiers whose layers no longer match their config (pruned heads / neurons).

They save like any transformer run; on load, every linear layer is first resized to the shape stored
in the weights file, so a pruned model loads offline from its own folder.
"""

from __future__ import annotations

from emolab.models.registry import register_model
from emolab.models.text import TextClassifierModule, TransformerClassifier
from emolab.models.torch_base import fit_shapes


@register_model("transformer-pruned")
class PrunedTransformerClassifier(TransformerClassifier):
    supports_resume = False

    @classmethod
    def from_transformer(cls, model: TransformerClassifier) -> PrunedTransformerClassifier:
        return cls(model.cfg, model.labels, model.module, model.tokenizer)

    training = "none"  # a compressed copy: fine-tuned by `emolab compress`, not trained by `emolab run`

    @classmethod
    def summary(cls, cfg) -> str:
        return f"{super().summary(cfg)}, pruned"

    @staticmethod
    def fit_state(module: TextClassifierModule, state: dict) -> None:
        fit_shapes(module, state)
