"""A model added the way docs/design.md says: one module with its class, its config dataclass and
``@register_model``; nothing else in emolab changes. Imported by ``test_adding_a_model.py``.

``keyword-centroid``: each text becomes counts of its words hashed into ``buckets`` slots; a class keeps the
smoothed log share of each slot in its training texts (multinomial naive Bayes, ``alpha`` the smoothing)
and ``temperature`` softens the resulting probabilities.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emolab.models import Classifier, ModelConfig, register_model
from emolab.models.registry import read_model_card, write_model_card
from emolab.records import EpochRecord, LabelSet


@dataclass
class KeywordCentroidConfig(ModelConfig):
    buckets: int = 512
    alpha: float = 1.0
    temperature: float = 1.0

    def check(self, problems: list[str]) -> None:
        if isinstance(self.temperature, float) and self.temperature <= 0:
            problems.append(f"model.temperature: must be positive, got {self.temperature}")


@register_model("keyword-centroid")
class KeywordCentroid(Classifier):
    config_class = KeywordCentroidConfig
    family = "classical"
    training = "one-pass"

    def __init__(self, cfg: KeywordCentroidConfig, labels: LabelSet, centroids: np.ndarray | None = None):
        self.cfg, self.labels, self.centroids = cfg, labels, centroids

    @classmethod
    def summary(cls, cfg: KeywordCentroidConfig) -> str:
        return f"hashed-word centroids ({cfg.buckets} buckets)"

    @classmethod
    def from_config(cls, cfg, labels, dataset=None):
        return cls(cfg, labels)

    def _vectors(self, texts) -> np.ndarray:
        out = np.zeros((len(texts), self.cfg.buckets))
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, zlib.crc32(word.encode()) % self.cfg.buckets] += 1
        return out

    def fit(self, dataset, run_cfg, logger=None, *, workdir=None, resume=False):
        from emolab.metrics import one_pass_record

        train = dataset.split("train")
        x = self._vectors(train.inputs)
        counts = np.stack([x[train.labels == k].sum(0) for k in range(len(self.labels))]) + self.cfg.alpha
        self.centroids = np.log(counts / counts.sum(1, keepdims=True))  # log P(slot | class)
        record: EpochRecord = one_pass_record(self, dataset, 0.0)
        if logger is not None:
            logger.on_epoch(record)
        return [record]

    def predict_proba(self, inputs, batch_size: int = 64) -> np.ndarray:
        sims = self._vectors(list(inputs)) @ self.centroids.T / self.cfg.temperature  # equal class priors
        e = np.exp(sims - sims.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def num_parameters(self) -> int:
        return int(self.centroids.size)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        write_model_card(folder, self.card())
        (folder / "centroids.json").write_text(json.dumps(self.centroids.tolist()))

    @classmethod
    def load(cls, folder: Path) -> KeywordCentroid:
        card = read_model_card(folder)
        return cls(KeywordCentroidConfig.from_saved(card["config"]), LabelSet.from_dict(card["labels"]),
                   np.array(json.loads((Path(folder) / "centroids.json").read_text())))
