"""The classical baselines, on scikit-learn: TF-IDF over word and character n-grams + logistic regression or
a linear SVM for texts (``tfidf``), and logistic regression on averaged pixels for faces (``pixel-logreg``).

Fast (well under a minute on dair-ai emotion) and the floor every neural model is compared against
(``emolab analyze`` fits them beside a run, :mod:`emolab.analyze`). The
fitted scikit-learn pipeline is saved with ``skops.io``, which refuses any type it was not told to trust,
so opening a run directory someone sent you cannot run their code (a pickle could). Runs saved before
as ``pipeline.joblib`` load only when the user says they trust the file (``--trust-pickle``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import numpy as np

from emolab.errors import EmolabError
from emolab.models.registry import (MODEL_FILE, Classifier, ModelConfig, read_model_card, register_model,
                                    write_model_card)
from emolab.records import FACE_SIDE, EpochRecord, LabelSet

SKOPS_FILE, PICKLE_FILE = "pipeline.skops", "pipeline.joblib"
TRUST_PICKLE_ENV = "EMOLAB_TRUST_PICKLE"  # set by --trust-pickle
# the scikit-learn types this module's pipelines hold that skops does not trust by default
TRUSTED_TYPES = ["sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration"]


def _vectorizers(pipeline: Any) -> dict[str, Any]:
    return dict(pipeline.named_steps["features"].transformer_list)


def save_pipeline(pipeline: Any, path: Path) -> None:
    """skops for the estimators; the vectorizers' vocabularies (hundreds of thousands of n-grams, which skops
    writes one node at a time, minutes) as a JSON file beside it, ``<path>.vocabulary.json``."""
    import json

    import skops.io as sio

    vocabularies = {name: v.vocabulary_ for name, v in _vectorizers(pipeline).items()}
    try:
        for v in _vectorizers(pipeline).values():
            v.vocabulary_, v.stop_words_ = {}, None  # stop_words_ is for introspection only (scikit-learn docs)
        sio.dump(pipeline, path)
    finally:
        for name, v in _vectorizers(pipeline).items():
            v.vocabulary_ = vocabularies[name]
    vocab_file = path.with_suffix(".vocabulary.json")
    vocab_file.write_text(json.dumps({name: {k: int(i) for k, i in vocab.items()}
                                      for name, vocab in vocabularies.items()}))


def load_skops(path: Path) -> Any:
    """An estimator saved with ``skops.io``; any type outside scikit-learn's and :data:`TRUSTED_TYPES` is
    refused before anything is built."""
    import skops.io as sio

    untrusted = sorted(set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
    if untrusted:
        raise EmolabError(f"{path}: refusing to load types emolab does not write: {', '.join(untrusted)}",
                          hint="the file was changed or made elsewhere; retrain the model with `emolab run`")
    return sio.load(path, trusted=TRUSTED_TYPES)


def load_pipeline(path: Path) -> Any:
    """A pipeline saved by :func:`save_pipeline`, its types checked by :func:`load_skops`."""
    import json

    pipeline = load_skops(path)
    vocab_file = path.with_suffix(".vocabulary.json")
    if not vocab_file.is_file():
        raise EmolabError(f"{vocab_file} is missing", hint="copy the whole model/ folder, or retrain the run")
    vocabularies = json.loads(vocab_file.read_text())
    for name, v in _vectorizers(pipeline).items():
        v.vocabulary_ = {str(k): int(i) for k, i in vocabularies[name].items()}
    return pipeline


def _load_pickle(folder: Path) -> Any:
    """An old run's joblib pickle, only when the user said they trust it; it is re-saved as skops beside it."""
    import os

    if os.environ.get(TRUST_PICKLE_ENV) != "1":
        raise EmolabError(f"{folder / PICKLE_FILE} is a pickle (a run saved by an older emolab): loading it could "
                          "run any code inside it, so emolab does not open it by default",
                          hint="if you trust whoever made it, add --trust-pickle once (or set EMOLAB_TRUST_PICKLE=1): "
                               f"emolab then re-saves it as {SKOPS_FILE}, which loads safely from then on")
    import joblib

    pipeline = joblib.load(folder / PICKLE_FILE)
    save_pipeline(pipeline, folder / SKOPS_FILE)
    return pipeline


def _calibration_folds(labels: np.ndarray | None):
    """3 folds, fewer when a class has fewer examples (``emolab sanity`` fits 20); a class seen once leaves no
    held-out data, so the sigmoid is then fitted on the training examples themselves."""
    if labels is None or labels.ndim != 1 or len(labels) == 0:
        return 3
    smallest = int(np.bincount(labels).compress(np.bincount(labels) > 0).min())
    if smallest >= 2:
        return min(3, smallest)
    everything = np.arange(len(labels))
    return [(everything, everything)]


@dataclass
class TfidfConfig(ModelConfig):
    classifier: Literal["logreg", "svm"] = "logreg"  # logistic regression or a calibrated linear SVM
    word_ngrams: list = field(default_factory=lambda: [1, 2])  # [min_n, max_n] of the word n-grams
    char_ngrams: list = field(default_factory=lambda: [2, 5])  # [min_n, max_n] of the character n-grams
    max_features: Optional[int] = 200000  # most frequent n-grams kept per vectorizer; None: all
    C: float = 10.0  # inverse regularisation strength (the SVM gets C / 10)

    def check(self, problems: list[str]) -> None:
        for key in ("word_ngrams", "char_ngrams"):
            value = getattr(self, key)
            if isinstance(value, list) and not (len(value) == 2 and all(isinstance(v, int) for v in value)
                                                and 1 <= value[0] <= value[1]):
                problems.append(f"model.{key}: expected [min_n, max_n] with 1 <= min_n <= max_n, got {value}")
        if isinstance(self.C, float) and self.C <= 0:
            problems.append(f"model.C: must be positive, got {self.C}")
        if isinstance(self.max_features, int) and self.max_features < 1:
            problems.append(f"model.max_features: must be at least 1 (or null: every feature), got {self.max_features}")

    def unregularised(self) -> TfidfConfig:
        return dataclasses.replace(self, C=max(self.C, 100.0))


@register_model("tfidf")
class TfidfClassifier(Classifier):
    config_class = TfidfConfig
    family = "classical"
    training = "one-pass"

    def __init__(self, cfg: TfidfConfig, labels: LabelSet, pipeline: Any = None):
        self.cfg = cfg
        self.labels = labels
        self.pipeline = pipeline

    @classmethod
    def summary(cls, cfg: TfidfConfig) -> str:
        return (f"TF-IDF word {cfg.word_ngrams} + char {cfg.char_ngrams} n-grams, "
                + ("logistic regression" if cfg.classifier == "logreg" else "linear SVM") + f", C={cfg.C:g}")

    @classmethod
    def citation(cls, cfg: TfidfConfig) -> str:
        return "tfidf"

    @classmethod
    def from_config(cls, cfg: TfidfConfig, labels: LabelSet, dataset=None) -> TfidfClassifier:
        return cls(cfg, labels)

    def _build(self, seed: int, labels: np.ndarray | None = None, weighting: bool | str = False):
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
        weights = None  # train.class_weights, as the training loop weights its loss (single-label runs)
        if weighting and labels is not None and labels.ndim == 1:
            from emolab.data.stats import class_weights

            weights = dict(enumerate(class_weights(labels, len(self.labels.names), weighting)))
        if cfg.classifier == "logreg":
            clf = LogisticRegression(C=cfg.C, max_iter=2000, random_state=seed, class_weight=weights)
        else:  # a linear SVM has no probabilities: calibrate it (sigmoid, 3-fold)
            clf = CalibratedClassifierCV(LinearSVC(C=cfg.C / 10, random_state=seed, class_weight=weights),
                                         cv=_calibration_folds(labels))
        if self.labels.multi_label:
            clf = OneVsRestClassifier(clf)
        return Pipeline([("features", features), ("clf", clf)])

    def fit(self, dataset, run_cfg, logger=None, *, workdir=None, resume=False) -> list[EpochRecord]:
        from emolab.metrics import one_pass_record

        train = dataset.split("train")
        start = time.perf_counter()
        self.pipeline = self._build(run_cfg.seed, np.asarray(train.labels), run_cfg.train.class_weights)
        self.pipeline.fit(list(train.inputs), train.labels)
        record = one_pass_record(self, dataset, time.perf_counter() - start)
        if logger is not None:
            logger.on_epoch(record)
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
        write_model_card(folder, self.card())
        save_pipeline(self.pipeline, folder / SKOPS_FILE)

    @classmethod
    def load(cls, folder: Path) -> TfidfClassifier:
        folder = Path(folder)
        card = read_model_card(folder)
        cfg = TfidfConfig.from_saved(card["config"], source=str(folder / MODEL_FILE))
        pipeline = load_pipeline(folder / SKOPS_FILE) if (folder / SKOPS_FILE).is_file() else _load_pickle(folder)
        return cls(cfg, LabelSet.from_dict(card["labels"]), pipeline)


# --- faces: logistic regression on pixels -------------------------------------------------------------

PIXELS_FILE = "pixels.skops"


def pooled_pixels(images: np.ndarray, pool: int) -> np.ndarray:
    """``(N, H, W)`` images -> ``(N, (H // pool) * (W // pool))`` features: the mean of each ``pool`` x ``pool``
    square (48x48 faces, pool 2: 24x24 = 576 features); rows and columns past the last whole square are dropped."""
    n, h, w = images.shape
    return (images[:, : h // pool * pool, : w // pool * pool]
            .reshape(n, h // pool, pool, w // pool, pool).mean(axis=(2, 4)).reshape(n, -1))


@dataclass
class PixelLogregConfig(ModelConfig):
    modality: ClassVar[str] = "image"

    pool: int = 2  # side of the square of pixels averaged into one feature (48x48 faces, 2: 24x24 features)
    C: float = 0.1  # inverse regularisation strength of the logistic regression
    max_iter: int = 300  # lbfgs iterations at most (the report says when it stopped there unconverged)

    def check(self, problems: list[str]) -> None:
        if isinstance(self.pool, int) and self.pool < 1:
            problems.append(f"model.pool: must be at least 1, got {self.pool}")
        if isinstance(self.C, float) and self.C <= 0:
            problems.append(f"model.C: must be positive, got {self.C}")
        if isinstance(self.max_iter, int) and self.max_iter < 1:
            problems.append(f"model.max_iter: must be at least 1, got {self.max_iter}")

    def unregularised(self) -> PixelLogregConfig:
        return dataclasses.replace(self, C=max(self.C, 100.0), max_iter=max(self.max_iter, 2000))


@register_model("pixel-logreg")
class PixelLogregClassifier(Classifier):
    """Standardised pooled pixels -> multinomial logistic regression (lbfgs): the simple baseline face CNNs are
    compared with."""

    config_class = PixelLogregConfig
    modality = "image"
    family = "classical"
    training = "one-pass"

    def __init__(self, cfg: PixelLogregConfig, labels: LabelSet, pipeline: Any = None, side: int = FACE_SIDE):
        self.cfg, self.labels, self.pipeline, self.side = cfg, labels, pipeline, side

    @classmethod
    def input_spec(cls, cfg: PixelLogregConfig, side: int = FACE_SIDE) -> dict[str, Any]:
        return {"kind": "image", "side": side, "channels": 1, "crop": None}

    @classmethod
    def summary(cls, cfg: PixelLogregConfig) -> str:
        return f"logistic regression on {cfg.pool}x{cfg.pool}-averaged pixels, C={cfg.C:g}"

    def card(self):
        card = self.describe(self.cfg, self.labels, config=dataclasses.asdict(self.cfg))
        return self.with_calibration(dataclasses.replace(card, input=self.input_spec(self.cfg, self.side)))

    @classmethod
    def from_config(cls, cfg: PixelLogregConfig, labels: LabelSet, dataset=None) -> PixelLogregClassifier:
        side = FACE_SIDE if dataset is None else int(dataset.split("train").inputs.shape[-1])
        return cls(cfg, labels, side=side)

    def set_inference(self, eval_cfg) -> None:
        if eval_cfg.tta != "none":
            raise EmolabError(f"model {self.name!r} has no test-time augmentation (eval.tta: {eval_cfg.tta})",
                              hint="set eval.tta: none (or --tta none)")

    def fit(self, dataset, run_cfg, logger=None, *, workdir=None, resume=False) -> list[EpochRecord]:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from emolab.metrics import one_pass_record

        train = dataset.split("train")
        start = time.perf_counter()
        weights = None  # train.class_weights, as the training loop weights its loss
        if run_cfg.train.class_weights:
            from emolab.data.stats import class_weights

            weights = dict(enumerate(class_weights(train.labels, len(self.labels.names), run_cfg.train.class_weights)))
        self.pipeline = make_pipeline(StandardScaler(), LogisticRegression(
            C=self.cfg.C, max_iter=self.cfg.max_iter, random_state=run_cfg.seed, class_weight=weights))
        with warnings.catch_warnings():  # said by fit_notes (the report's row) instead of a warning mid-run
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.pipeline.fit(pooled_pixels(np.asarray(train.inputs), self.cfg.pool), train.labels)
        record = one_pass_record(self, dataset, time.perf_counter() - start)
        if logger is not None:
            logger.on_epoch(record)
        return [record]

    def fit_notes(self) -> list[str]:
        clf = self.pipeline[-1]
        if clf.n_iter_.max() >= clf.max_iter:
            return [f"lbfgs stopped at its {clf.max_iter}-iteration cap before converging"]
        return []

    def predict_proba(self, inputs, batch_size: int = 64) -> np.ndarray:
        images = np.asarray(inputs, dtype=np.uint8)  # (N, H, W); a list of (H, W) arrays stacks the same way
        if images.ndim == 2:  # one image
            images = images[None]
        probs = np.zeros((len(images), len(self.labels)))  # a class absent from training keeps probability 0
        probs[:, self.pipeline.classes_] = self.pipeline.predict_proba(pooled_pixels(images, self.cfg.pool))
        return probs

    def num_parameters(self) -> int:
        clf = self.pipeline[-1]
        return int(clf.coef_.size + clf.intercept_.size)

    def save(self, folder: Path) -> None:
        import skops.io as sio

        folder = Path(folder)
        write_model_card(folder, self.card())
        sio.dump(self.pipeline, folder / PIXELS_FILE)

    @classmethod
    def load(cls, folder: Path) -> PixelLogregClassifier:
        card = read_model_card(folder)
        side = int(card.get("input", {}).get("side", FACE_SIDE))
        cfg = PixelLogregConfig.from_saved(card["config"], source=str(Path(folder) / MODEL_FILE))
        return cls(cfg, LabelSet.from_dict(card["labels"]), load_skops(Path(folder) / PIXELS_FILE), side=side)
