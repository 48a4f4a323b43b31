"""How sure a number is: seeded percentile-bootstrap intervals on every metric of a split, and paired tests
between two models scored on the same examples (paired bootstrap; McNemar's exact test for accuracy).

Vectorised: a resample is a row of counts ``w`` (how often each example was drawn, multinomial), so a
split's confusion matrix under every resample is a sum over examples grouped by (true, predicted) pair,
``(B, K, K)`` in one ``np.add.reduceat``; multi-label counts are ``w @ indicator``. The statistics are the
ones :mod:`emolab.metrics` computes with scikit-learn (macro over the labels present in y_true or y_pred).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 1000


def resample_counts(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``(resamples, n)`` draw counts of a bootstrap over ``n`` examples (each row sums to ``n``)."""
    return np.concatenate(list(_count_blocks(n, resamples, seed)))


def _count_blocks(n: int, resamples: int, seed: int):
    """The same draws as :func:`resample_counts`, in blocks of rows that keep memory near 64 MB (float32
    counts are exact below 2**24 examples)."""
    rng = np.random.default_rng(seed)
    block = max(1, min(resamples, 16_000_000 // max(n, 1)))
    for start in range(0, resamples, block):
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=min(block, resamples - start)).astype(np.float32)


def _resampled(y_true, preds: list, k: int, multi_label: bool, resamples: int, seed: int) -> list[dict]:
    """Each prediction's statistics under the same resamples (paired), computed block by block."""
    parts: list[list[dict]] = [[] for _ in preds]
    for w in _count_blocks(len(y_true), resamples, seed):
        for out, pred in zip(parts, preds):
            out.append(_stats(w, y_true, pred, k, multi_label))
    return [{key: np.concatenate([p[key] for p in out]) for key in out[0]} for out in parts]


def _confusions(w: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """``(B, K, K)`` confusion matrices of every resample (rows true, columns predicted)."""
    code = y_true.astype(np.int64) * k + y_pred.astype(np.int64)
    order = np.argsort(code, kind="stable")
    codes, starts = np.unique(code[order], return_index=True)
    sums = np.add.reduceat(w[:, order], starts, axis=1, dtype=np.float64)
    cm = np.zeros((w.shape[0], k * k))
    cm[:, codes] = sums
    return cm.reshape(-1, k, k)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)


def single_label_stats(w: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Accuracy, macro/weighted F1 ``(B,)`` and per-class F1 ``(B, K)`` under each resample ``w``."""
    cm = _confusions(w, y_true, y_pred, k)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    n = support.sum(axis=1)
    f1 = _div(2 * tp, support + predicted)
    present = (support + predicted) > 0
    return {"accuracy": tp.sum(axis=1) / n,
            "macro_f1": (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1),
            "weighted_f1": (f1 * support).sum(axis=1) / n,
            "f1": np.where(present, f1, np.nan)}  # a class absent from a resample has no F1 there


def multi_label_stats(w: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Micro/macro F1 and subset accuracy ``(B,)`` and per-label F1 ``(B, K)`` under each resample."""
    t, p = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    w = np.asarray(w, dtype=np.float64)
    tp, fp, fn = w @ (t & p), w @ (~t & p), w @ (t & ~p)
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    micro = _div(2 * tp.sum(axis=1), (2 * tp + fp + fn).sum(axis=1))
    exact = w @ (t == p).all(axis=1) / w.sum(axis=1)
    return {"micro_f1": micro, "macro_f1": f1.mean(axis=1), "subset_accuracy": exact,
            "f1": np.where(2 * tp + fp + fn > 0, f1, np.nan)}


def _stats(w, y_true, y_pred, k, multi_label):
    return multi_label_stats(w, y_true, y_pred) if multi_label else single_label_stats(w, y_true, y_pred, k)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE, *, ignore_missing: bool = False
                        ) -> np.ndarray:
    """Lower and upper percentile bounds along the first axis (NaN entries skipped with ``ignore_missing``)."""
    tail = 100 * (1 - confidence) / 2
    if ignore_missing:
        import warnings

        with warnings.catch_warnings():  # an all-NaN column (a class in no resample) gives NaN, said by the caller
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanpercentile(values, [tail, 100 - tail], axis=0)
    return np.percentile(values, [tail, 100 - tail], axis=0)


def intervals(y_true: np.ndarray, y_pred: np.ndarray, label_names, *, multi_label: bool = False,
              resamples: int = RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """95% percentile-bootstrap intervals of a split's headline metrics and per-class F1, JSON-ready.
    ``y_pred`` is class ids (single-label) or a multi-hot decision matrix (multi-label)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) < 2 or resamples <= 0:
        return {}
    stats = _resampled(y_true, [y_pred], len(label_names), multi_label, resamples, seed)[0]
    out: dict[str, Any] = {k: percentile_interval(v, confidence).round(6).tolist()
                           for k, v in stats.items() if k != "f1"}
    # per class: over the resamples that hold the class (None where none does)
    per_class = percentile_interval(stats["f1"], confidence, ignore_missing=True).round(6)
    out["per_class_f1"] = {name: None if np.isnan(per_class[0, i]) else per_class[:, i].tolist()
                           for i, name in enumerate(label_names)}
    out["method"] = {"kind": "percentile bootstrap over examples", "resamples": resamples, "seed": seed,
                     "confidence": confidence}
    return out


@dataclass
class PairedResult:
    """``a - b`` on one metric: the observed difference, its paired-bootstrap interval and two-sided p."""
    metric: str
    difference: float
    interval: tuple[float, float]
    p_value: float
    test: str
    resamples: int = 0  # a bootstrap p-value cannot resolve values below 1 / resamples

    @property
    def p_text(self) -> str:
        if self.resamples and self.test != "McNemar exact" and self.p_value <= 1 / self.resamples:
            return f"< {1 / self.resamples:.2g}"
        return f"{self.p_value:.2g}"

    @property
    def significant(self) -> bool:
        return self.p_value < 1 - CONFIDENCE

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "difference": self.difference, "interval": list(self.interval),
                "p_value": self.p_value, "p_text": self.p_text, "test": self.test, "significant": self.significant}


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: a binomial test on the examples exactly one model gets right."""
    from scipy.stats import binomtest

    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((~correct_a & correct_b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_comparison(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, label_names, *,
                      multi_label: bool = False, resamples: int = 2000, seed: int = 0,
                      confidence: float = CONFIDENCE) -> dict[str, PairedResult]:
    """Model a against model b on the same examples: every headline metric's difference with a paired
    bootstrap interval (both models scored on each resample) and p-value; accuracy's p-value is McNemar's
    exact test."""
    y_true, pred_a, pred_b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    k = len(label_names)
    ones = np.ones((1, len(y_true)))
    observed_a, observed_b = _stats(ones, y_true, pred_a, k, multi_label), _stats(ones, y_true, pred_b, k, multi_label)
    boot_a, boot_b = _resampled(y_true, [pred_a, pred_b], k, multi_label, resamples, seed)
    out = {}
    for metric in boot_a:
        if metric == "f1":
            continue
        diff = boot_a[metric] - boot_b[metric]
        observed = float(observed_a[metric][0] - observed_b[metric][0])
        lo, hi = percentile_interval(diff, confidence)
        # two-sided; a resample count can resolve no p below 1 / resamples
        p = float(min(1.0, max(2 * min((diff <= 0).mean(), (diff >= 0).mean()), 1 / resamples)))
        test = "paired bootstrap"
        if metric == "accuracy":
            p, test = mcnemar_exact(pred_a == y_true, pred_b == y_true), "McNemar exact"
        out[metric] = PairedResult(metric, observed, (float(lo), float(hi)), p, test, resamples)
    return out


def align_ids(reference, other) -> np.ndarray | None:
    """Indices into ``other`` that put its examples in ``reference``'s order, or None when the two hold
    different examples (a paired test needs the same ones)."""
    reference, other = np.asarray(reference).astype(str), np.asarray(other).astype(str)
    where = {i: k for k, i in enumerate(other)}
    if len(reference) != len(other) or set(where) != set(reference):
        return None
    return np.array([where[i] for i in reference], dtype=np.int64)


def p_phrase(test: dict[str, Any]) -> str:
    """``p = 0.031`` or ``p < 0.0005`` for a :meth:`PairedResult.to_dict` (older dicts: from ``p_value``)."""
    text = test.get("p_text") or f"{test['p_value']:.2g}"
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def decisions(probs: np.ndarray, *, multi_label: bool, thresholds: Any = 0.5) -> np.ndarray:
    """What a model decided: class ids, or the multi-hot matrix at its thresholds."""
    probs = np.asarray(probs)
    if multi_label:
        return probs >= np.broadcast_to(np.asarray(thresholds, dtype=float), (probs.shape[1],))
    return probs.argmax(axis=1)


def with_interval(value: float | None, interval: list | tuple | None, digits: int = 4) -> str:
    """``0.9305 [0.919, 0.941]``: the value, then its interval to one digit fewer."""
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    if interval:
        text += f" [{interval[0]:.{digits - 1}f}, {interval[1]:.{digits - 1}f}]"
    return text
