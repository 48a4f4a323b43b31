"""``emolab analyze RUN``: everything the error analysis finds, written to ``RUN/analysis/``."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from emolab import plots, runfiles
from emolab.analysis.errors import confusion_pairs, errors_by_class, margins, misclassified, near_ties
from emolab.analysis.tags import TAGS, label_issues, tag_examples
from emolab.data import dataset_spec
from emolab.errors import EmolabError
from emolab.metrics import reliability_bins
from emolab.records import Predictions
from emolab.rundir import atomic_write, open_run, to_json

ERRORS_COLUMNS = ["id", "input", "true_label", "pred_label", "confidence", "margin", "tags", "annotation", "fix"]


def tag_lift(tags: dict[str, np.ndarray], wrong: np.ndarray) -> dict[str, dict[str, float]]:
    """Per tag: examples tagged, error rate with and without the tag (a lift > 1: the tag goes with errors)."""
    out = {}
    for name, mask in tags.items():
        with_tag = wrong[mask].mean() if mask.any() else 0.0
        without = wrong[~mask].mean() if (~mask).any() else 0.0
        out[name] = {"tagged": int(mask.sum()), "tagged_errors": int((mask & wrong).sum()),
                     "error_rate_tagged": float(with_tag), "error_rate_untagged": float(without),
                     "lift": float(with_tag / without) if without > 0 else 0.0}
    return out


def read_annotations(path: Path) -> dict[str, dict[str, str]]:
    """An edited ``errors.csv``: ``id`` -> its ``annotation`` and ``fix`` (rows left empty are skipped)."""
    import pandas as pd

    if not path.is_file():
        raise EmolabError(f"annotations file not found: {path}", hint="pass the edited errors.csv")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EmolabError(f"{path}: bytes that are not UTF-8 at byte {exc.start}",
                          hint="re-save the annotations file as UTF-8 (CSV UTF-8 in a spreadsheet)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise EmolabError(f"{path}: not a readable CSV ({exc})",
                          hint="edit the errors.csv that `emolab analyze` wrote; keep it a CSV") from None
    missing = [c for c in ("id", "annotation", "fix") if c not in table.columns]
    if missing:
        raise EmolabError(f"{path}: no column {', '.join(missing)}",
                          hint="edit the errors.csv that `emolab analyze` wrote; keep its id, annotation and fix columns")
    return {r["id"]: {"annotation": r["annotation"].strip(), "fix": r["fix"].strip()}
            for r in table.to_dict("records") if r["annotation"].strip() or r["fix"].strip()}


def errors_csv(rows: list[dict], tags: dict[str, np.ndarray], notes: dict[str, dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(ERRORS_COLUMNS)
    for r in rows:
        i = r["index"]
        note = notes.get(r["id"], {})
        w.writerow([r["id"], r["input"], r["true"], r["pred"], f"{r['confidence']:.4f}", f"{r['margin']:.4f}",
                    ";".join(n for n, m in tags.items() if m[i]), note.get("annotation", ""), note.get("fix", "")])
    return buf.getvalue()


def analyze_predictions(preds: Predictions, *, modality: str = "text", max_length: int | None = None,
                        top: int = 20, near_tie: float = 0.1, images: np.ndarray | None = None) -> dict[str, Any]:
    """The whole analysis of one split as a JSON-ready dict (pure: no files). ``images`` (uint8, aligned
    with ``preds``) feed the image tags."""
    if preds.labels.multi_label:
        raise EmolabError("error analysis handles single-label runs",
                          hint="for GoEmotions use multi_label_policy: drop or first to analyse errors")
    issues, quality = label_issues(preds)
    tags = tag_examples(preds, modality=modality, max_length=max_length, label_issues=issues, images=images)
    wrong = preds.y_pred != preds.y_true
    pairs = confusion_pairs(preds)
    for pair in pairs:
        members = [r["index"] for r in misclassified(preds) if r["true"] == pair["true"] and r["pred"] == pair["pred"]]
        pair["tags"] = {n: int(m[members].sum()) for n, m in tags.items()}
    names = preds.labels.names
    tag_stats = tag_lift(tags, wrong)
    if "likely_label_error" in tag_stats:  # cleanlab flags only errors: its error rate is 1 and its lift empty
        flags = tag_stats["likely_label_error"]
        flags.update(lift=None, share_of_errors=flags["tagged_errors"] / max(int(wrong.sum()), 1))
    return {
        "split": preds.split,
        "modality": modality,
        "n": int(len(preds.ids)),
        "errors": int(wrong.sum()),
        "misclassified": misclassified(preds, top=top),
        "near_ties": near_ties(preds, threshold=near_tie, top=top),
        "near_tie_count": int((margins(preds.probs) < near_tie).sum()),
        "errors_by_class": errors_by_class(preds),
        "confusion_pairs": pairs,
        "tags": {n: TAGS[n][0] for n in tags},
        "tag_stats": tag_stats,
        "label_issues": [{"index": int(i), "id": str(preds.ids[i]),
                          "input": preds.inputs[i] if preds.inputs else "", "given": names[int(preds.y_true[i])],
                          "predicted": names[int(preds.y_pred[i])], "quality": float(quality[i])}
                         for i in issues[:top]],
        "label_issue_count": int(len(issues)),
        "confidence": {"right": preds.probs.max(1)[~wrong].round(4).tolist(),
                       "wrong": preds.probs.max(1)[wrong].round(4).tolist()},
        "_tags": tags,
    }


BASELINE_MODEL = ("tfidf", {"classifier": "logreg"})  # the classical baseline text runs are compared with


def baseline_scores(data_cfg, seed: int) -> dict[str, Any]:
    """The classical baseline (TF-IDF + logistic regression) trained and scored on the same data, for the
    base-vs-fine-tuned comparison."""
    from emolab.config import RunConfig
    from emolab.data import load_dataset
    from emolab.evaluation import predict, score
    from emolab.models import create_model, model_config

    name, values = BASELINE_MODEL
    cfg = RunConfig(data=data_cfg, model=model_config(name, **values), seed=seed)
    ds = load_dataset(data_cfg, seed)
    model = create_model(cfg.model, ds.labels, ds)
    model.fit(ds, cfg)
    preds = predict(model, ds.split("test"), "test")
    m = score(preds)
    return {"model": "tfidf + logistic regression", "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "weighted_f1": m["weighted_f1"],
            "per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()},
            "_ids": np.asarray(preds.ids).astype(str), "_pred": preds.probs.argmax(axis=1)}


def against_baseline(preds: Predictions, baseline: dict[str, Any], seed: int) -> dict[str, Any]:
    """The run minus its baseline on the same test examples (paired bootstrap, McNemar), from the baseline's
    private ``_ids`` / ``_pred`` (removed from the dict)."""
    from emolab.significance import align_ids, paired_comparison

    ids, pred = baseline.pop("_ids"), baseline.pop("_pred")
    take = align_ids(preds.ids, ids)
    if take is None:
        return {"skipped": "the baseline was scored on other test examples than the run"}
    result = paired_comparison(preds.y_true, preds.probs.argmax(axis=1), pred[take], preds.labels.names, seed=seed)
    return {k: v.to_dict() for k, v in result.items()}


def analyze_run(run_path: str | Path, *, split: str = "test", annotations: str | Path | None = None,
                top: int = 20, attributions: bool = True, baseline: bool = True, say=print) -> dict[str, Any]:
    """Analyse a finished run's saved predictions; writes ``analysis/`` (json, errors.csv, plots).

    With ``attributions`` (text runs) the saved model is loaded to explain the top errors by word
    occlusion; with ``baseline`` a TF-IDF model is trained on the same data for comparison.
    """
    run = open_run(run_path)
    run_path, cfg, card = run.path, run.config, run.card
    preds = run.predictions(split)
    modality = card.modality
    images = split_images(cfg.data, cfg.seed, preds, split) if card.image else None
    result = analyze_predictions(preds, modality=modality, max_length=card.input.get("max_length"), top=top,
                                 images=images)
    tags = result.pop("_tags")
    out = run_path / runfiles.ANALYSIS
    errors_file = run_path / runfiles.ERRORS_CSV
    notes = read_annotations(Path(annotations)) if annotations else {}
    if not annotations and errors_file.is_file():  # keep what a person already wrote in the run's copy
        notes = read_annotations(errors_file)
    result["annotations"] = [{"id": k, **v} for k, v in notes.items()]
    atomic_write(errors_file, errors_csv(misclassified(preds), tags, notes))
    names = preds.labels.names
    metrics = _per_class(preds)
    result["plots"] = {
        "per_class": str(plots.per_class_bars(metrics, run_path / runfiles.PER_CLASS_PLOT).relative_to(run_path)),
        "confidence": str(plots.confidence_histogram(result["confidence"]["right"], result["confidence"]["wrong"],
                                                     run_path / runfiles.CONFIDENCE_PLOT).relative_to(run_path)),
        "reliability": str(plots.reliability_diagram(reliability_bins(preds.probs, preds.y_true),
                                                     run_path / runfiles.RELIABILITY_PLOT).relative_to(run_path)),
    }
    result["labels"] = list(names)
    if attributions and not card.image:
        from emolab.analysis.attributions import explain_errors

        say("explaining the top errors (word occlusion)")
        result["attributions"] = explain_errors(run.model().predict_proba, result["misclassified"], list(names))
    if baseline and not card.image and card.family != "classical":  # a classical run is its own baseline
        say("scoring the TF-IDF baseline on the same test set")
        result["baseline"] = baseline_scores(cfg.data, cfg.seed)
        result["baseline"]["paired"] = against_baseline(preds, result["baseline"], cfg.seed)
    if card.image:
        from emolab.analysis.faces import face_figures, pixel_baseline_scores

        say("drawing misclassified faces and occlusion maps")
        result["plots"].update(face_figures(run_path, preds, images, result["misclassified"], out,
                                            explain=attributions))
        if baseline and card.family == "cnn":  # a dense net on pixels is itself the simple baseline
            say("scoring the pixel logistic-regression baseline on the same test set")
            result["baseline"] = pixel_baseline_scores(cfg.data, cfg.seed)
            result["baseline"]["paired"] = against_baseline(preds, result["baseline"], cfg.seed)
    opinion = dataset_spec(cfg.data.name).second_opinion(cfg.data, preds.ids) if "likely_label_error" in tags else None
    if opinion is not None:
        from emolab.analysis.label_check import check_flags

        result["label_check"] = check_flags(preds.y_true, preds.y_pred, tags["likely_label_error"], opinion)
        say(result["label_check"]["conclusion"])
    atomic_write(run_path / runfiles.ANALYSIS_JSON, to_json(result) + "\n")
    say(f"{result['errors']} errors of {result['n']} ({split}); {result['label_issue_count']} likely label errors; "
        f"wrote {out}")
    return result


def split_images(data_cfg, seed: int, preds: Predictions, split: str) -> np.ndarray:
    """The uint8 images behind an image run's saved predictions, re-read from its dataset by id."""
    from emolab.data import load_dataset

    data = load_dataset(data_cfg, seed).split(split)
    where = {str(i): k for k, i in enumerate(data.ids)}
    missing = [str(i) for i in preds.ids if str(i) not in where]
    if missing:
        raise EmolabError(f"{len(missing)} predicted ids (e.g. {missing[0]!r}) are not in the {split} split of "
                          f"{data_cfg.name}", hint="the dataset changed since the run; re-run it")
    return data.inputs[[where[str(i)] for i in preds.ids]]


def _per_class(preds: Predictions) -> dict[str, dict[str, float]]:
    from emolab.metrics import classification_metrics

    return classification_metrics(preds.y_true, preds.probs, preds.labels.names)["per_class"]
