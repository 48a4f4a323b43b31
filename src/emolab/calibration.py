"""Calibration: make a model's probabilities honest (a 0.9 right 9 times in 10) without changing its decisions.

:class:`Calibration` is an affine map of each label's logit, ``z' = z / T + b``, fitted on the validation split
by minimising the negative log-likelihood:

- ``temperature`` (Guo et al. 2017): one temperature ``T`` for a single-label model (softmax over ``log p / T``:
  the arg-max never changes), or one per label for a multi-label model (sigmoid of ``logit(p) / T_k``);
- ``platt`` (Platt 1999), multi-label only: a slope and an offset per label (``a_k z + b_k``, ``a_k > 0``);
- ``auto``: temperature for single-label models, Platt for multi-label ones (it calibrated better there).

Both are monotone per label, so a multi-label run's tuned thresholds map through the same function and every
decision stays the same (:meth:`Calibration.thresholds`). The map applies to the probabilities the model
returns (the logits are recovered from them exactly), so a model with test-time augmentation is calibrated
after its views are averaged, as its scores leave emolab. A fitted calibration is stored in the model's card
(``model/emolab_model.json``) and :func:`emolab.models.load_model` applies it in every ``predict_proba``;
exports carry it in their graph or head weights (:meth:`Calibration.torch_head`).

:func:`calibration_metrics` measures ECE, NLL and Brier before and after on a split, each with a 95%
bootstrap interval and the paired difference. NumPy and SciPy only: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from emolab.errors import EmolabError
from emolab.significance import CONFIDENCE, percentile_interval, resample_counts

METHODS = ("auto", "temperature", "platt")
# auto: temperature for single-label runs, Platt for multi-label ones (measured on GoEmotions Ekman, TF-IDF:
# test ECE 0.032 -> 0.0064 with Platt vs 0.011 with per-label temperatures; benchmarks/results/calibration.md)
_EPS = 1e-12
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))  # temperatures searched between 0.05 and 20


def _logits(probs: np.ndarray, multi_label: bool) -> np.ndarray:
    """The logits the probabilities came from: ``log p`` (up to a per-row constant, which softmax ignores) for a
    softmax, ``log(p / (1 - p))`` for sigmoids."""
    p = np.asarray(probs, dtype=np.float64)
    if multi_label:
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return np.log(p) - np.log1p(-p)
    return np.log(np.clip(p, _EPS, 1.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warnings for large |z|


@dataclass(frozen=True)
class Calibration:
    """``z' = z / temperature + shift`` on each label's logit (one temperature for single-label models)."""

    method: str
    temperature: tuple[float, ...]
    shift: tuple[float, ...] | None = None
    multi_label: bool = False
    in_graph: bool = False  # an export whose graph or head weights already apply it (emolab must not again)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities; rows of NaN (inputs that could not be scored) stay NaN."""
        probs = np.asarray(probs, dtype=np.float64)
        if probs.size == 0:
            return probs
        z = _logits(probs, self.multi_label) / np.asarray(self.temperature)
        if self.shift is not None:
            z = z + np.asarray(self.shift)
        return _sigmoid(z) if self.multi_label else _softmax(z)

    def thresholds(self, thresholds: Any) -> Any:
        """Multi-label decision thresholds on the calibrated scale that decide exactly as ``thresholds`` did on
        the uncalibrated one."""
        if not self.multi_label:
            return thresholds
        t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(self.temperature),))
        z = _logits(t, True) / np.asarray(self.temperature) + (0.0 if self.shift is None else np.asarray(self.shift))
        return _sigmoid(z)

    def linear(self, weight, bias):
        """The last linear layer's weight and bias with the map folded in (``W / T``, ``b / T + shift``), so a
        softmax or sigmoid over its output gives the calibrated scores (torch or NumPy arrays)."""
        t = np.asarray(self.temperature, dtype=np.float64)
        if len(t) == 1:
            t = np.full(weight.shape[0], t[0])
        shift = np.zeros_like(t) if self.shift is None else np.asarray(self.shift, dtype=np.float64)
        try:
            import torch

            if isinstance(weight, torch.Tensor):
                tt = torch.as_tensor(t, dtype=weight.dtype)
                return weight / tt[:, None], bias / tt + torch.as_tensor(shift, dtype=bias.dtype)
        except ImportError:  # pragma: no cover - torch is a dependency of the models that have weights
            pass
        return weight / t[:, None], bias / t + shift

    def torch_head(self, module):
        """``module`` (returning logits) followed by the map, for ONNX export."""
        import torch

        temperature = torch.tensor(self.temperature, dtype=torch.float32)
        shift = torch.tensor(self.shift or [0.0] * len(self.temperature), dtype=torch.float32)

        class Calibrated(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = module
                self.register_buffer("temperature", temperature)
                self.register_buffer("shift", shift)

            def forward(self, *args):
                return self.inner(*args) / self.temperature + self.shift

        return Calibrated().eval()

    def summary(self) -> str:
        if len(self.temperature) == 1:
            return f"temperature {self.temperature[0]:.3f}"
        return f"{self.method}, per label"

    def to_dict(self) -> dict[str, Any]:
        out = {"method": self.method, "temperature": [round(float(t), 6) for t in self.temperature],
               "multi_label": self.multi_label}
        if self.shift is not None:
            out["shift"] = [round(float(s), 6) for s in self.shift]
        if self.in_graph:
            out["in_graph"] = True
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(method=d["method"], temperature=tuple(float(t) for t in d["temperature"]),
                   shift=None if d.get("shift") is None else tuple(float(s) for s in d["shift"]),
                   multi_label=bool(d.get("multi_label", False)), in_graph=bool(d.get("in_graph", False)))

    @classmethod
    def of_card(cls, extra: dict[str, Any]) -> Calibration | None:
        """The calibration a model card records (``card.extra``), or None."""
        saved = extra.get("calibration")
        return cls.from_dict(saved) if saved else None


# --- fitting -----------------------------------------------------------------------------------------------


def _nll_softmax(z: np.ndarray, y: np.ndarray) -> float:
    z = z - z.max(axis=1, keepdims=True)
    return float((np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]).mean())


def _nll_sigmoid(z: np.ndarray, y: np.ndarray) -> float:
    return float((np.logaddexp(0.0, z) - y * z).mean())  # binary cross-entropy on logits


def _fit_temperature(loss, z: np.ndarray, y: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    best = minimize_scalar(lambda log_t: loss(z / np.exp(log_t), y), bounds=_LOG_T_BOUNDS, method="bounded",
                           options={"xatol": 1e-5})
    return float(np.exp(best.x))


def _fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope (kept positive: fitted as its log) and offset of one label's logit, by minimising the BCE."""
    from scipy.optimize import minimize

    def loss(params):
        a, b = np.exp(params[0]), params[1]
        return _nll_sigmoid(a * z + b, y)

    best = minimize(loss, x0=np.zeros(2), method="L-BFGS-B", bounds=[(-_LOG_T_BOUNDS[1], _LOG_T_BOUNDS[1]), (-20, 20)])
    return float(np.exp(best.x[0])), float(best.x[1])


def fit(y_true: np.ndarray, probs: np.ndarray, *, multi_label: bool, method: str = "temperature") -> Calibration:
    """Fit the calibration on (validation) labels and probabilities by minimising the NLL."""
    if method not in METHODS:
        raise EmolabError(f"unknown calibration method {method!r}", hint=f"choose one of {', '.join(METHODS)}")
    if method == "auto":
        method = "platt" if multi_label else "temperature"
    if method == "platt" and not multi_label:
        raise EmolabError("platt scaling applies to multi-label runs (one sigmoid per label)",
                          hint="use temperature for a single-label run: it never changes the arg-max")
    y = np.asarray(y_true)
    if len(y) < 2:
        raise EmolabError("calibration needs at least 2 validation examples",
                          hint="give the run a validation split of a few hundred examples")
    z = _logits(probs, multi_label)
    if not multi_label:
        return Calibration(method, (_fit_temperature(_nll_softmax, z, y.astype(int)),))
    y = y.astype(np.float64)
    if method == "temperature":
        return Calibration(method, tuple(_fit_temperature(_nll_sigmoid, z[:, k], y[:, k]) for k in range(z.shape[1])),
                           multi_label=True)
    slopes, offsets = zip(*(_fit_platt(z[:, k], y[:, k]) for k in range(z.shape[1])))
    return Calibration(method, tuple(1.0 / a for a in slopes), tuple(offsets), multi_label=True)


# --- measuring ---------------------------------------------------------------------------------------------


def _per_example(y_true: np.ndarray, probs: np.ndarray, multi_label: bool, n_bins: int):
    """Per example: its NLL, its Brier score and its signed contribution to each confidence bin's gap (the
    ECE is ``sum_b |sum_i gap_ib| / (N * labels per example)``); the reliability bins' inputs."""
    p = np.asarray(probs, dtype=np.float64)
    n = len(p)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    if multi_label:
        y = np.asarray(y_true, dtype=np.float64)
        pc = np.clip(p, _EPS, 1 - _EPS)
        nll = -(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean(axis=1)
        brier = ((p - y) ** 2).mean(axis=1)
        conf, hit, rows = p.ravel(), y.ravel(), np.repeat(np.arange(n), p.shape[1])
    else:
        y = np.asarray(y_true, dtype=int)
        nll = -np.log(np.clip(p[np.arange(n), y], _EPS, 1.0))
        onehot = np.eye(p.shape[1])[y]
        brier = ((p - onehot) ** 2).sum(axis=1)
        conf, hit, rows = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64), np.arange(n)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    gap = np.zeros((n, n_bins))
    np.add.at(gap, (rows, which), hit - conf)
    per_row = len(conf) // max(n, 1)
    bins = {"edges": edges, "count": np.bincount(which, minlength=n_bins).astype(float),
            "confidence": np.bincount(which, weights=conf, minlength=n_bins),
            "accuracy": np.bincount(which, weights=hit, minlength=n_bins)}
    safe = np.maximum(bins["count"], 1)
    bins["confidence"], bins["accuracy"] = bins["confidence"] / safe, bins["accuracy"] / safe
    return nll, brier, gap, per_row, bins


def calibration_metrics(y_true: np.ndarray, before: np.ndarray, after: np.ndarray, *, multi_label: bool,
                        n_bins: int = 15, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """ECE, NLL and Brier of the same examples before and after calibration, with 95% percentile-bootstrap
    intervals and the paired difference (after - before, same resamples); the reliability bins of both;
    accuracy before and after (single-label: the arg-max, unchanged by construction)."""
    parts = {name: _per_example(y_true, p, multi_label, n_bins) for name, p in (("before", before), ("after", after))}
    n = len(y_true)
    out: dict[str, Any] = {"n": n, "bins": n_bins, "ece_kind": "per label-probability (multi-label)" if multi_label
                           else "top-label confidence"}
    stats: dict[str, dict[str, float]] = {}
    draws: dict[str, dict[str, np.ndarray]] = {}
    w = resample_counts(n, resamples, seed) if resamples and n > 1 else None
    for name, (nll, brier, gap, per_row, _bins) in parts.items():
        stats[name] = {"ece": float(np.abs(gap.sum(axis=0)).sum() / (n * per_row)), "nll": float(nll.mean()),
                       "brier": float(brier.mean())}
        if w is not None:
            draws[name] = {"ece": np.abs(w @ gap).sum(axis=1) / (n * per_row), "nll": w @ nll / n,
                           "brier": w @ brier / n}
    for key in ("ece", "nll", "brier"):
        row: dict[str, Any] = {"before": stats["before"][key], "after": stats["after"][key],
                               "change": stats["after"][key] - stats["before"][key]}
        row["relative_change"] = row["change"] / row["before"] if row["before"] else None
        if w is not None:
            row["before_interval"] = percentile_interval(draws["before"][key]).round(6).tolist()
            row["after_interval"] = percentile_interval(draws["after"][key]).round(6).tolist()
            row["change_interval"] = percentile_interval(draws["after"][key] - draws["before"][key]).round(6).tolist()
        out[key] = row
    if not multi_label:
        y = np.asarray(y_true, dtype=int)
        out["accuracy"] = {"before": float((np.asarray(before).argmax(1) == y).mean()),
                           "after": float((np.asarray(after).argmax(1) == y).mean())}
    out["reliability"] = {name: {k: v.tolist() for k, v in part[4].items()} for name, part in parts.items()}
    if w is not None:
        out["method"] = {"kind": "percentile bootstrap over examples", "resamples": resamples, "seed": seed,
                         "confidence": CONFIDENCE}
    return out


def metrics_markdown(result: dict[str, Any]) -> str:
    """The before/after table of :func:`calibration_metrics` (``result`` as written to calibration.json)."""
    from emolab.significance import with_interval

    m = result["test"]
    lines = ["| metric | before | after | change (after - before) |", "|---|---|---|---|"]
    for key, name in (("ece", "ECE"), ("nll", "NLL"), ("brier", "Brier")):
        row = m[key]
        rel = f" ({row['relative_change']:+.0%})" if row.get("relative_change") is not None else ""
        lines.append(f"| {name} | {with_interval(row['before'], row.get('before_interval'))} | "
                     f"{with_interval(row['after'], row.get('after_interval'))} | "
                     f"{with_interval(row['change'], row.get('change_interval'))}{rel} |")
    if "accuracy" in m:
        lines.append(f"| accuracy | {m['accuracy']['before']:.4f} | {m['accuracy']['after']:.4f} | "
                     f"{m['accuracy']['after'] - m['accuracy']['before']:+.4f} |")
    return "\n".join(lines) + "\n"
