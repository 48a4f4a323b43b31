"""Which examples a model gets wrong, and how: ranked errors, near-ties and confusion pairs."""

from __future__ import annotations

from typing import Any

import numpy as np

from emolab.records import Predictions


def margins(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per example (small: the model hesitated)."""
    top2 = np.sort(probs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _row(preds: Predictions, i: int) -> dict[str, Any]:
    names = preds.labels.names
    p = preds.probs[i]
    order = np.argsort(-p)
    return {
        "index": int(i),
        "id": str(preds.ids[i]),
        "input": preds.inputs[i] if preds.inputs is not None else "",
        "true": names[int(preds.y_true[i])],
        "pred": names[int(order[0])],
        "confidence": float(p[order[0]]),
        "p_true": float(p[int(preds.y_true[i])]),
        "margin": float(p[order[0]] - p[order[1]]),
        "top3": [(names[j], float(p[j])) for j in order[:3]],
    }


def misclassified(preds: Predictions, *, top: int | None = None) -> list[dict[str, Any]]:
    """Wrong predictions, confidently wrong first."""
    wrong = np.flatnonzero(preds.y_pred != preds.y_true)
    order = wrong[np.argsort(-preds.probs[wrong].max(axis=1), kind="stable")]
    return [_row(preds, int(i)) for i in order[:top]]


def near_ties(preds: Predictions, *, threshold: float = 0.1, top: int | None = None) -> list[dict[str, Any]]:
    """Examples whose top-2 probabilities are within ``threshold`` (right or wrong), closest first."""
    m = margins(preds.probs)
    idx = np.flatnonzero(m < threshold)
    return [_row(preds, int(i)) for i in idx[np.argsort(m[idx], kind="stable")][:top]]


def errors_by_class(preds: Predictions, *, top: int = 5) -> dict[str, list[dict[str, Any]]]:
    """For each true class, its most confident mistakes."""
    rows = misclassified(preds)
    out: dict[str, list] = {n: [] for n in preds.labels.names}
    for r in rows:
        if len(out[r["true"]]) < top:
            out[r["true"]].append(r)
    return out


def confusion_pairs(preds: Predictions, *, examples: int = 3) -> list[dict[str, Any]]:
    """(true -> predicted) pairs ranked by count, each with its share of the true class and examples."""
    names = preds.labels.names
    rows = misclassified(preds)
    support = np.bincount(preds.y_true, minlength=len(names))
    pairs: dict[tuple[str, str], list] = {}
    for r in rows:
        pairs.setdefault((r["true"], r["pred"]), []).append(r)
    ranked = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [{"true": t, "pred": p, "count": len(rs), "share_of_true": len(rs) / max(support[names.index(t)], 1),
             "examples": rs[:examples]} for (t, p), rs in ranked]
