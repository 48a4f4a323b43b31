"""The classical baseline: TF-IDF over word and character n-grams + logistic regression or a linear SVM.

Fast (well under a minute on dair-ai emotion) and the floor every neural model is compared against.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from emolab.config import ModelConfig
from emolab.models.registry import read_model_card, register_model, write_model_card
from emolab.records import EpochRecord, LabelSet


@register_model("tfidf")
class TfidfClassifier:
    def __init__(self, cfg: ModelConfig, labels: LabelSet, pipeline: Any = None):
        self.cfg = cfg
        self.labels = labels
        self.pipeline = pipeline

    @classmethod
    def from_config(cls, cfg: ModelConfig, labels: LabelSet) -> TfidfClassifier:
        return cls(cfg, labels)

    def _build(self, seed: int):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import FeatureUnion, Pipeline
        from sklearn.svm import LinearSVC

        cfg = self.cfg
        features = FeatureUnion([
            ("word", TfidfVectorizer(ngram_range=tuple(cfg.word_ngrams), sublinear_tf=True, min_df=1,
                                     max_features=cfg.max_features, lowercase=True)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(cfg.char_ngrams), sublinear_tf=True,
                                     min_df=2, max_features=cfg.max_features, lowercase=True)),
        ])
        if cfg.classifier == "logreg":
            clf = LogisticRegression(C=cfg.C, max_iter=2000, random_state=seed)
        else:  # a linear SVM has no probabilities: calibrate it (sigmoid, 3-fold)
            clf = CalibratedClassifierCV(LinearSVC(C=cfg.C / 10, random_state=seed), cv=3)
        if self.labels.multi_label:
            clf = OneVsRestClassifier(clf)
        return Pipeline([("features", features), ("clf", clf)])

    def fit(self, dataset, run_cfg, log=None) -> list[EpochRecord]:
        from emolab.metrics import one_pass_record

        train = dataset.split("train")
        start = time.perf_counter()
        self.pipeline = self._build(run_cfg.seed)
        self.pipeline.fit(list(train.inputs), train.labels)
        record = one_pass_record(self, dataset, time.perf_counter() - start)
        if log:
            log(record)
        return [record]

    def predict_proba(self, inputs, batch_size: int = 64) -> np.ndarray:
        probs = self.pipeline.predict_proba(list(inputs))
        return np.asarray(probs, dtype=np.float64)

    def num_parameters(self) -> int:
        """Weights of the linear model(s), calibrated or one-vs-rest copies included."""

        def count(est) -> int:
            if hasattr(est, "coef_"):
                return int(est.coef_.size + np.size(est.intercept_))
            inner = [c.estimator for c in getattr(est, "calibrated_classifiers_", [])]
            return sum(count(e) for e in inner + list(getattr(est, "estimators_", [])))

        return count(self.pipeline.named_steps["clf"])

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        write_model_card(folder, self.name, self.labels, {"config": self.cfg.__dict__})
        joblib.dump(self.pipeline, folder / "pipeline.joblib")

    @classmethod
    def load(cls, folder: Path) -> TfidfClassifier:
        card = read_model_card(folder)
        cfg = ModelConfig(**card["config"])
        return cls(cfg, LabelSet.from_dict(card["labels"]), joblib.load(Path(folder) / "pipeline.joblib"))
