"""``emolab analyze RUN``: the error analysis of a finished run, written to ``RUN/analysis/``.

The analysis itself is pure (:mod:`emolab.analysis`: functions on predictions, inputs and probabilities). This
step gathers what it needs: the run's saved predictions, the images behind them, the run's model (occlusion
attributions), a classical baseline fitted on the same data (:class:`BaselineModel`, a registered model), the
dataset's second opinion on its labels; then writes ``analysis.json``, ``errors.csv`` and the plots.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emolab import plots, runfiles
from emolab.analysis.errors import misclassified
from emolab.analysis.summary import against_baseline, analyze_predictions, errors_csv, read_annotations
from emolab.analysis.tags import tag_split
from emolab.errors import EmolabError
from emolab.metrics import reliability_bins
from emolab.records import Dataset, ModelCard, Predictions
from emolab.rundir import atomic_write, open_run, to_json


@dataclass(frozen=True)
class BaselineModel:
    """A classical model a run is compared with: fitted on the run's own data, scored on its test split."""

    model: str  # the registered model
    settings: dict[str, Any] = field(default_factory=dict)  # its config keys
    title: str = ""  # its name in analysis.json and the report
    short: str = ""  # its name in the progress line


TFIDF_BASELINE = BaselineModel("tfidf", {"classifier": "logreg"}, "tfidf + logistic regression", "TF-IDF")
PIXEL_BASELINE = BaselineModel("pixel-logreg", {"pool": 2, "C": 0.1, "max_iter": 300},
                               "logistic regression on 24x24 pixels", "pixel logistic-regression")


def baseline_for(card: ModelCard) -> BaselineModel | None:
    """The baseline a run is compared with: TF-IDF for text runs, logistic regression on pixels for face CNNs;
    none for a classical run (it is its own baseline) or a dense net on pixels (itself the simple baseline)."""
    if card.image:
        return PIXEL_BASELINE if card.family == "cnn" else None
    return None if card.family == "classical" else TFIDF_BASELINE


@dataclass(frozen=True)
class Baseline:
    """A baseline fitted beside a run: its name (with what its fit wants said) and its test predictions."""

    title: str
    predictions: Predictions


def fit_baseline(spec: BaselineModel, data: Dataset, run_cfg) -> Baseline:
    """Train ``spec``'s model on ``data`` (the run's dataset, with the run's seed) and predict its test split."""
    from emolab.config import RunConfig
    from emolab.evaluation import predict
    from emolab.models import create_model, model_config

    cfg = RunConfig(data=run_cfg.data, model=model_config(spec.model, **spec.settings), seed=run_cfg.seed)
    model = create_model(cfg.model, data.labels, data)
    model.fit(data, cfg)
    title = spec.title + "".join(f" ({note})" for note in model.fit_notes())
    return Baseline(title, predict(model, data.split("test"), "test"))


def split_images(data: Dataset, preds: Predictions, split: str, *, data_name: str) -> np.ndarray:
    """The uint8 images behind an image run's saved predictions, found by id in its dataset (``data.name``)."""
    part = data.split(split)
    where = {str(i): k for k, i in enumerate(part.ids)}
    missing = [str(i) for i in preds.ids if str(i) not in where]
    if missing:
        raise EmolabError(f"{len(missing)} predicted ids (e.g. {missing[0]!r}) are not in the {split} split of "
                          f"{data_name}", hint="the dataset changed since the run; re-run it")
    return part.inputs[[where[str(i)] for i in preds.ids]]


def analyze_run(run_path: str | Path, *, split: str = "test", annotations: str | Path | None = None,
                top: int = 20, attributions: bool = True, baseline: bool = True, say=print) -> dict[str, Any]:
    """Analyse a finished run's saved predictions; writes ``analysis/`` (json, errors.csv, plots).

    With ``attributions`` the saved model is loaded to explain the top errors by occlusion (words of a text,
    patches of a face); with ``baseline`` the run's classical baseline (:func:`baseline_for`) is trained on the
    same data for comparison.
    """
    from emolab.data import dataset_spec, load_dataset
    from emolab.metrics import classification_metrics

    run = open_run(run_path)
    run_path, cfg, card = run.path, run.config, run.card
    preds = run.predictions(split)
    dataset = functools.cache(lambda: load_dataset(cfg.data, cfg.seed))  # read once, for images and baseline
    images = split_images(dataset(), preds, split, data_name=cfg.data.name) if card.image else None
    tagging = tag_split(preds, modality=card.modality, max_length=card.input.get("max_length"), images=images)
    result = analyze_predictions(preds, tagging=tagging, modality=card.modality, top=top)
    out = run_path / runfiles.ANALYSIS
    errors_file = run_path / runfiles.ERRORS_CSV
    notes = read_annotations(Path(annotations)) if annotations else {}
    if not annotations and errors_file.is_file():  # keep what a person already wrote in the run's copy
        notes = read_annotations(errors_file)
    result["annotations"] = [{"id": k, **v} for k, v in notes.items()]
    atomic_write(errors_file, errors_csv(misclassified(preds), tagging.masks, notes))
    names = preds.labels.names
    per_class = classification_metrics(preds.y_true, preds.probs, names)["per_class"]
    result["plots"] = {
        "per_class": str(plots.per_class_bars(per_class, run_path / runfiles.PER_CLASS_PLOT).relative_to(run_path)),
        "confidence": str(plots.confidence_histogram(result["confidence"]["right"], result["confidence"]["wrong"],
                                                     run_path / runfiles.CONFIDENCE_PLOT).relative_to(run_path)),
        "reliability": str(plots.reliability_diagram(reliability_bins(preds.probs, preds.y_true),
                                                     run_path / runfiles.RELIABILITY_PLOT).relative_to(run_path)),
    }
    result["labels"] = list(names)
    if card.image:
        from emolab.analysis.faces import face_figures

        say("drawing misclassified faces and occlusion maps")
        predict_proba = run.model().predict_proba if attributions and result["misclassified"] else None
        result["plots"].update(face_figures(run_path, preds, images, result["misclassified"],
                                            predict_proba=predict_proba))
    elif attributions:
        from emolab.analysis.attributions import explain_errors

        say("explaining the top errors (word occlusion)")
        result["attributions"] = explain_errors(run.model().predict_proba, result["misclassified"], list(names))
    spec = baseline_for(card) if baseline else None
    if spec is not None:
        say(f"scoring the {spec.short} baseline on the same test set")
        fitted = fit_baseline(spec, dataset(), cfg)
        result["baseline"] = against_baseline(preds, fitted.predictions, title=fitted.title, seed=cfg.seed)
    flagged = tagging.masks.get("likely_label_error")
    opinion = dataset_spec(cfg.data.name).second_opinion(cfg.data, preds.ids) if flagged is not None else None
    if opinion is not None:
        from emolab.analysis.label_check import check_flags

        result["label_check"] = check_flags(preds.y_true, preds.y_pred, flagged, opinion)
        say(result["label_check"]["conclusion"])
    atomic_write(run_path / runfiles.ANALYSIS_JSON, to_json(result) + "\n")
    say(f"{result['errors']} errors of {result['n']} ({split}); {result['label_issue_count']} likely label errors; "
        f"wrote {out}")
    return result
