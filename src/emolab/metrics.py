"""Classification metrics as pure functions on arrays (no torch).

Confusion matrix and precision/recall/F1 (per class and averaged) come from scikit-learn; calibration
(ECE, reliability bins), cross-entropy/KL and threshold tuning, which it lacks, are written out here.
``y_true`` is ``(N,)`` class ids (or ``(N, K)`` multi-hot for multi-label), ``probs`` is ``(N, K)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

_EPS = 1e-12

# name endings of the metrics and leaderboard columns where smaller is better: losses, calibration error,
# times and sizes (val_loss, cross_entropy, ece, train_s, ms_per_example, parameters)
LOWER_IS_BETTER = ("loss", "cross_entropy", "kl_divergence", "ece", "bce", "_s", "ms_per_example", "parameters")


def lower_is_better(name: str) -> bool:
    """True for a metric or leaderboard column that is minimised (early stopping, leaderboard order)."""
    return name.endswith(LOWER_IS_BETTER)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(K, K)``: row = true class, column = predicted class."""
    return skm.confusion_matrix(y_true, y_pred, labels=range(num_classes))


def normalize_confusion(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total (recall on the diagonal); empty rows stay zero."""
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm, dtype=float), where=totals > 0)


def cross_entropy(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean ``-sum(t * log p)``; ``targets`` are class ids ``(N,)`` or distributions ``(N, K)``."""
    probs = np.clip(np.asarray(probs, dtype=float), _EPS, 1.0)
    if targets.ndim == 1:
        return float(-np.log(probs[np.arange(len(targets)), targets]).mean())
    return float(-(targets * np.log(probs)).sum(axis=1).mean())


def kl_divergence(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean ``KL(target || predicted)``. For one-hot targets it equals the cross-entropy."""
    if targets.ndim == 1:
        return cross_entropy(probs, targets)
    t = np.asarray(targets, dtype=float)
    p = np.clip(np.asarray(probs, dtype=float), _EPS, 1.0)
    ratio = np.log(np.clip(t, _EPS, None)) - np.log(p)
    return float(np.where(t > 0, t * ratio, 0.0).sum(axis=1).mean())


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, *, n_bins: int = 15) -> float:
    """ECE over equal-width confidence bins: sum_b |B|/N * |accuracy(B) - confidence(B)|."""
    bins = reliability_bins(probs, y_true, n_bins=n_bins)
    n = bins["count"].sum()
    gaps = np.abs(bins["accuracy"] - bins["confidence"])
    return float((bins["count"] * gaps).sum() / max(n, 1))


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, *, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin: count, mean confidence and accuracy (for ECE and reliability diagrams)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(float)
    conf_sum = np.bincount(which, weights=conf, minlength=n_bins)
    corr_sum = np.bincount(which, weights=correct, minlength=n_bins)
    safe = np.maximum(count, 1)
    return {"edges": edges, "count": count, "confidence": conf_sum / safe, "accuracy": corr_sum / safe}


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, label_names: list[str] | tuple[str, ...], *,
    target_probs: np.ndarray | None = None, ece_bins: int = 15,
) -> dict[str, Any]:
    """Everything for a single-label classifier, as one JSON-ready dict."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=float)
    k = len(label_names)
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=range(k), zero_division=0)
    # macro: over the labels present in y_true or y_pred (sklearn's default labels); weighted: by support
    macro = skm.precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    weighted = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(k), average="weighted",
                                                   zero_division=0)
    targets = target_probs if target_probs is not None else y_true
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "macro_precision": float(macro[0]),
        "macro_recall": float(macro[1]),
        "macro_f1": float(macro[2]),
        "weighted_precision": float(weighted[0]),
        "weighted_recall": float(weighted[1]),
        "weighted_f1": float(weighted[2]),
        "cross_entropy": cross_entropy(probs, y_true),
        "kl_divergence": kl_divergence(probs, targets),
        "ece": expected_calibration_error(probs, y_true, n_bins=ece_bins),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": normalize_confusion(cm).round(6).tolist(),
    }


# --- multi-label ---------------------------------------------------------------------------------


def multilabel_f1(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Micro and macro F1 (and per-label P/R/F1) for multi-hot ``(N, K)`` arrays."""
    # nonzero = positive; int8 because sklearn's input checks (np.unique) are ~2x faster on it than on bool/int64
    y_true = np.asarray(y_true, dtype=bool).astype(np.int8)
    y_pred = np.asarray(y_pred, dtype=bool).astype(np.int8)
    labels = range(y_true.shape[1])
    if y_true.shape[1] == 1:  # sklearn reads one column as binary class ids: score its positive class
        y_true, y_pred, labels = y_true[:, 0], y_pred[:, 0], [1]
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    micro = skm.f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0)
    # sklearn's macro F1 over all K labels is the plain mean of the per-label F1: no second pass over the data
    return {"micro_f1": float(micro), "macro_f1": float(f1.mean()), "precision": precision,
            "recall": recall, "f1": f1, "support": support}


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, *, grid: np.ndarray | None = None) -> np.ndarray:
    """Per-label threshold maximising that label's F1 on (validation) data."""
    grid = np.linspace(0.05, 0.95, 19) if grid is None else grid
    y_true = np.asarray(y_true, dtype=bool)
    best = np.full(probs.shape[1], 0.5)
    for j in range(probs.shape[1]):
        scores = []
        for t in grid:
            pred = probs[:, j] >= t
            tp = float((pred & y_true[:, j]).sum())
            denom = pred.sum() + y_true[:, j].sum()
            scores.append(2 * tp / denom if denom else 0.0)
        best[j] = grid[int(np.argmax(scores))]
    return best


def multilabel_metrics(
    y_true: np.ndarray, probs: np.ndarray, label_names: list[str] | tuple[str, ...], *,
    threshold: float | np.ndarray = 0.5,
) -> dict[str, Any]:
    """Micro/macro F1 at a threshold (scalar or per label), subset accuracy and BCE."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=float)
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=float), (probs.shape[1],))
    y_pred = probs >= thresholds
    f = multilabel_f1(y_true, y_pred)
    p = np.clip(probs, _EPS, 1 - _EPS)
    bce = float(-(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)).mean())
    return {
        "n": int(len(y_true)),
        "micro_f1": f["micro_f1"],
        "macro_f1": f["macro_f1"],
        "subset_accuracy": float((y_pred == y_true.astype(bool)).all(axis=1).mean()),
        "bce": bce,
        "thresholds": thresholds.round(4).tolist(),
        "per_class": {
            name: {"precision": float(f["precision"][i]), "recall": float(f["recall"][i]),
                   "f1": float(f["f1"][i]), "support": int(f["support"][i]), "threshold": float(thresholds[i])}
            for i, name in enumerate(label_names)
        },
    }


def one_pass_record(model, dataset, seconds: float):
    """The single history line of a model fitted in one pass (TF-IDF) or not at all (a pretrained
    reference): its metrics on the train and validation splits, labelled epoch 1."""
    from emolab.records import EpochRecord

    def summary(split) -> dict[str, float]:
        probs = model.predict_proba(split.inputs)
        if model.labels.multi_label:
            m = multilabel_metrics(split.labels, probs, model.labels.names)
            return {"loss": m["bce"], "macro_f1": m["macro_f1"], "micro_f1": m["micro_f1"]}
        m = classification_metrics(split.labels, probs, model.labels.names)
        return {"loss": m["cross_entropy"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                "weighted_f1": m["weighted_f1"], "cross_entropy": m["cross_entropy"], "kl_divergence": m["kl_divergence"]}

    return EpochRecord(epoch=1, step=1, lr=0.0, train=summary(dataset.split("train")),
                       validation=summary(dataset.split("validation")), seconds=seconds)
