"""Evaluation: predict a split into :class:`Predictions`, score it, time inference, render Markdown."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from emolab import runfiles
from emolab.metrics import classification_metrics, multilabel_metrics, tune_thresholds
from emolab.records import Predictions, Split
from emolab.rundir import decision_thresholds
from emolab.significance import decisions, intervals, with_interval


def predict(model, split: Split, split_name: str, *, batch_size: int = 64) -> Predictions:
    probs = model.predict_proba(split.inputs, batch_size=batch_size)
    texts = list(split.inputs) if isinstance(split.inputs, list) else None
    return Predictions(ids=split.ids, inputs=texts, y_true=split.labels, probs=probs, labels=model.labels,
                       split=split_name, target_probs=split.soft_labels)


def score(preds: Predictions, *, threshold: float | np.ndarray = 0.5, ece_bins: int = 15,
          bootstrap: int = 0, seed: int = 0) -> dict[str, Any]:
    """All metrics of one split, as a JSON-ready dict; with ``bootstrap`` resamples, their 95% intervals
    under ``intervals``."""
    multi = preds.labels.multi_label
    if multi:
        out = multilabel_metrics(preds.y_true, preds.probs, preds.labels.names, threshold=threshold)
    else:
        out = classification_metrics(preds.y_true, preds.probs, preds.labels.names,
                                     target_probs=preds.target_probs, ece_bins=ece_bins)
    if bootstrap:
        out["intervals"] = split_intervals(preds, threshold, bootstrap, seed)
    return out


def split_intervals(preds: Predictions, thresholds: Any, resamples: int, seed: int) -> dict[str, Any]:
    """95% bootstrap intervals of one split's metrics, on the model's decisions at ``thresholds``."""
    multi = preds.labels.multi_label
    return intervals(preds.y_true, decisions(preds.probs, multi_label=multi, thresholds=thresholds),
                     preds.labels.names, multi_label=multi, resamples=resamples, seed=seed)


def evaluate(predictions: dict[str, Predictions], *, threshold: float = 0.5, tune: bool = True,
             ece_bins: int = 15, bootstrap: int = 0, seed: int = 0) -> dict[str, Any]:
    """Score every split; multi-label thresholds are tuned on validation and applied to the others."""
    thresholds: float | np.ndarray = threshold
    out: dict[str, Any] = {}
    multi = any(p.labels.multi_label for p in predictions.values())
    if multi and tune and "validation" in predictions:
        val = predictions["validation"]
        thresholds = tune_thresholds(val.y_true, val.probs)
        out["tuned_thresholds"] = dict(zip(val.labels.names, thresholds.round(3).tolist()))
    for name, preds in predictions.items():
        out[name] = score(preds, threshold=thresholds, ece_bins=ece_bins, bootstrap=bootstrap, seed=seed)
        if multi and tune and "validation" in predictions:
            out[name]["at_fixed_threshold"] = {
                k: v for k, v in score(preds, threshold=threshold).items() if k in ("micro_f1", "macro_f1")
            }
    return out


def time_inference(model, inputs, *, batch_sizes=(1, 64), n: int = 200, warmup: int = 3) -> dict[str, Any]:
    """Examples/second at each batch size and p50/p95 latency per example at batch 1."""
    inputs = inputs[: max(n, 1)]
    result: dict[str, Any] = {}
    for bs in batch_sizes:
        batches = [inputs[i:i + bs] for i in range(0, len(inputs), bs)]
        for b in batches[:warmup]:
            model.predict_proba(b, batch_size=bs)
        times = []
        for b in batches:
            start = time.perf_counter()
            model.predict_proba(b, batch_size=bs)
            times.append((time.perf_counter() - start, len(b)))
        total = sum(t for t, _ in times)
        result[f"batch_{bs}_examples_per_s"] = float(sum(k for _, k in times) / total)
        if bs == 1:
            lat = np.array([t for t, _ in times]) * 1000
            result["batch_1_p50_ms"] = float(np.percentile(lat, 50))
            result["batch_1_p95_ms"] = float(np.percentile(lat, 95))
    return result


# --- Markdown -----------------------------------------------------------------------------------------


def _fmt(v: Any, interval: list | None = None) -> str:
    return with_interval(v, interval) if isinstance(v, float) else str(v)


def metrics_markdown(metrics: dict[str, Any], label_names) -> str:
    """Headline table per split, per-class report and confusion matrix (test, else last split)."""
    splits = [s for s in ("train", "validation", "test") if s in metrics]
    if not splits:
        return ""
    multi = "micro_f1" in metrics[splits[0]]
    keys = (["micro_f1", "macro_f1", "subset_accuracy", "bce"] if multi else
            ["accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall", "cross_entropy",
             "kl_divergence", "ece"])
    lines = ["| split | n | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for s in splits:
        ci = metrics[s].get("intervals", {})
        lines.append(f"| {s} | {metrics[s]['n']} | " + " | ".join(_fmt(metrics[s][k], ci.get(k)) for k in keys) + " |")
    main = "test" if "test" in metrics else splits[-1]
    method = metrics[main].get("intervals", {}).get("method")
    if method:
        lines += ["", f"In brackets: {method['confidence']:.0%} {method['kind']} ({method['resamples']} resamples, "
                      f"seed {method['seed']})."]
    ci = metrics[main].get("intervals", {}).get("per_class_f1", {})
    lines += ["", f"## Per-class report ({main})", "", "| label | precision | recall | f1 | support |",
              "|---|---|---|---|---|"]
    for name, row in metrics[main]["per_class"].items():
        lines.append(f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | {_fmt(row['f1'], ci.get(name))} | "
                     f"{row['support']} |")
    if "confusion_matrix" in metrics[main]:
        lines += ["", f"## Confusion matrix ({main}; rows true, columns predicted)", "",
                  "| true \\ pred | " + " | ".join(label_names) + " |", "|---|" + "---|" * len(label_names)]
        for name, row in zip(label_names, metrics[main]["confusion_matrix"]):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    if "timing" in metrics:
        lines += ["", "## Inference timing", ""] + [f"- {k}: {_fmt(v)}" for k, v in metrics["timing"].items()]
    return "\n".join(lines) + "\n"


def metrics_with_intervals(run) -> dict[str, Any]:
    """A run's ``metrics.json``; splits scored before emolab wrote intervals get them from the saved
    predictions (same resampler, the run's seed), so older runs report and compare like new ones."""
    metrics = run.metrics
    seed = run.raw_config.get("seed", 0)
    resamples = run.raw_config.get("eval", {}).get("bootstrap", 1000)  # older runs: the default
    if not resamples:  # the user turned intervals off
        return metrics
    out = dict(metrics)
    for split in ("train", "validation", "test"):
        if split in metrics and "intervals" not in metrics[split] and run.has(runfiles.predictions_npz(split)):
            preds = run.predictions(split)
            out[split] = {**metrics[split],
                          "intervals": split_intervals(preds, decision_thresholds(run.path, preds.labels.names),
                                                       resamples, seed)}
    return out

