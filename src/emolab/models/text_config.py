"""The ``model`` section of transformer text models, apart from the model so that reading a run's config
(``emolab compare``, ``emolab report``, serving an export) needs neither torch nor transformers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from emolab.errors import unknown_name_message
from emolab.models.registry import ModelConfig
from emolab.models.text_augment import TextAugmentConfig

POOLING_NAMES = ("cls", "mean", "max", "attention", "mean-max")  # emolab.models.text.POOLINGS implements each


@dataclass
class TransformerConfig(ModelConfig):
    backbone: str = "minilm-l6"  # offline short name, Hugging Face hub id or local path
    pooling: str = "mean"  # cls, mean, max, attention, mean-max
    dropout: float = 0.1  # dropout before the classification head
    freeze_embeddings: bool = False  # keep the encoder's embeddings fixed
    freeze_layers: int = 0  # keep this many bottom encoder layers fixed
    max_length: int = 128  # texts are truncated to this many tokens
    backbone_config: Optional[dict] = None  # build a randomly initialised encoder from this (tests)
    group_by_length: bool = True  # batch training texts of similar length together (less padding)
    # training-text augmentation (EDA operations, GloVe substitution, rare-class oversampling); off by default
    augment: TextAugmentConfig = field(default_factory=TextAugmentConfig)

    def check(self, problems: list[str]) -> None:
        self.augment.check(problems)
        if isinstance(self.pooling, str) and self.pooling not in POOLING_NAMES:
            problems.append("model.pooling: " + unknown_name_message("pooling", self.pooling, POOLING_NAMES))
        if isinstance(self.max_length, int) and self.max_length < 1:
            problems.append(f"model.max_length: must be at least 1, got {self.max_length}")
        if isinstance(self.freeze_layers, int) and self.freeze_layers < 0:
            problems.append(f"model.freeze_layers: must be 0 or more, got {self.freeze_layers}")
        if isinstance(self.dropout, float) and not 0.0 <= self.dropout < 1.0:
            problems.append(f"model.dropout: must be in [0, 1), got {self.dropout}")

    def unregularised(self) -> TransformerConfig:
        return dataclasses.replace(self, dropout=0.0, augment=TextAugmentConfig())
