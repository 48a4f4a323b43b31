"""The error analysis of one split as a JSON-ready dict, its ``errors.csv`` and the comparison with a baseline's
predictions: pure functions on predictions (the step that gathers them from a run is :mod:`emolab.analyze`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from emolab.analysis.errors import confusion_pairs, errors_by_class, margins, misclassified, near_ties
from emolab.analysis.tags import TAGS, Tagging, require_single_label, tag_split
from emolab.errors import EmolabError
from emolab.records import Predictions

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


def analyze_predictions(preds: Predictions, *, tagging: Tagging | None = None, modality: str = "text",
                        max_length: int | None = None, top: int = 20, near_tie: float = 0.1,
                        images: np.ndarray | None = None) -> dict[str, Any]:
    """The whole analysis of one split as a JSON-ready dict (pure: no files). ``tagging``: the split's error tags
    (:func:`~emolab.analysis.tags.tag_split`), else tagged here from ``modality``, ``max_length`` and ``images``
    (uint8, aligned with ``preds``, for the image tags)."""
    require_single_label(preds)
    if tagging is None:
        tagging = tag_split(preds, modality=modality, max_length=max_length, images=images)
    tags, issues, quality = tagging.masks, tagging.label_issues, tagging.quality
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
    }


def against_baseline(preds: Predictions, baseline: Predictions, *, title: str, seed: int) -> dict[str, Any]:
    """A baseline's scores on the run's test split (``title`` names it) and, under ``paired``, the run minus the
    baseline on the same test examples (paired bootstrap, McNemar)."""
    from emolab.metrics import classification_metrics
    from emolab.significance import align_ids, paired_comparison

    m = classification_metrics(baseline.y_true, baseline.probs, baseline.labels.names)
    out = {"model": title, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "weighted_f1": m["weighted_f1"],
           "per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()}}
    take = align_ids(preds.ids, baseline.ids)
    if take is None:
        out["paired"] = {"skipped": "the baseline was scored on other test examples than the run"}
        return out
    result = paired_comparison(preds.y_true, preds.probs.argmax(axis=1), baseline.probs.argmax(axis=1)[take],
                               preds.labels.names, seed=seed)
    out["paired"] = {k: v.to_dict() for k, v in result.items()}
    return out
