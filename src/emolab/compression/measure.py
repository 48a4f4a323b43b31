"""What every compressed model is measured on: quality against the fp32 model, size, and speed.

A method hands back :class:`Candidate` objects (a model with ``predict_proba`` plus what it knows about
its own size); :func:`result` turns each into a :class:`CompressionResult`, one row of the table.
Latency is timed example by example, each example run through every candidate in turn, so a noisy,
shared machine slows every candidate alike and the ratios between them stay meaningful.
"""

from __future__ import annotations

import gzip
import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emolab.metrics import classification_metrics
from emolab.significance import p_phrase, paired_comparison

TABLE_COLUMNS = ("method", "precision", "n_eval", "accuracy", "macro_f1", "delta_accuracy", "delta_macro_f1",
                 "significance", "per_class_f1_delta", "flips", "flip_examples", "params_total", "params_nonzero", "file_bytes",
                 "file_bytes_gzip", "latency_p50_ms", "latency_p95_ms", "throughput_b32", "speedup_b1", "batching",
                 "batch_drift", "notes")
# max |probability change| of an example scored alone vs inside a batch that still counts as batch-independent
BATCH_TOLERANCE = 1e-6


@dataclass
class Candidate:
    """A compressed model ready to measure. ``artifact`` is the file (or bytes) whose size is reported."""

    method: str
    model: Any
    params_total: int
    params_nonzero: int
    artifact: bytes | Path
    precision: str = "fp32"
    notes: str = ""
    max_eval_examples: int | None = None  # evaluate on the first N examples only (slow fp16 on CPU)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CompressionResult:
    """One row of the compression table; every field is JSON-ready."""

    method: str
    precision: str
    n_eval: int
    accuracy: float
    macro_f1: float
    delta_accuracy: float  # vs fp32 on the same examples
    delta_macro_f1: float
    # the Δs tested on the same examples: paired-bootstrap intervals, McNemar's exact p for accuracy
    significance: dict[str, Any]
    per_class_f1_delta: dict[str, float]
    flips: int  # examples whose predicted label differs from the fp32 model's
    flip_examples: list[dict[str, str]]
    params_total: int
    params_nonzero: int
    file_bytes: int
    file_bytes_gzip: int
    latency_p50_ms: float | None  # batch 1, per example, median over timing rounds
    latency_p95_ms: float | None
    throughput_b32: float | None  # examples per second at batch 32
    speedup_b1: float | None  # median per-example ratio fp32 time / this time, timed side by side
    batching: str = "batched"  # "batched", or "one at a time" (scores would depend on batch-mates)
    batch_drift: float | None = None  # max |probability change|, examples alone vs in one batch (batch_drift())
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- sizes ---------------------------------------------------------------------------------------------


def count_parameters(module) -> tuple[int, int]:
    """(total, non-zero) elements over a module's parameters."""
    total = nonzero = 0
    for p in module.parameters():
        total += p.numel()
        nonzero += int((p != 0).sum())
    return total, nonzero


def state_bytes(module) -> bytes:
    """The module's weights as a dense safetensors file (float modules) or a torch pickle (quantized)."""
    import torch

    state = module.state_dict()
    if all(isinstance(v, torch.Tensor) and not v.is_quantized for v in state.values()):
        from safetensors.torch import save

        return save({k: v.detach().cpu().contiguous() for k, v in state.items()})
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def artifact_sizes(artifact: bytes | Path) -> tuple[int, int]:
    """(dense bytes, gzip -6 bytes) of a file, a folder's files, or bytes in memory."""
    if isinstance(artifact, (bytes, bytearray)):
        blobs = [bytes(artifact)]
    else:
        path = Path(artifact)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        blobs = [p.read_bytes() for p in files]
    return sum(map(len, blobs)), sum(len(gzip.compress(b, compresslevel=6)) for b in blobs)


# --- quality -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSet:
    """The examples every candidate is scored on, with the fp32 model's probabilities on them."""

    texts: list
    y_true: np.ndarray
    label_names: tuple[str, ...]
    base_probs: np.ndarray

    def head(self, n: int | None) -> EvalSet:
        n = len(self.y_true) if n is None else min(n, len(self.y_true))
        return EvalSet(self.texts[:n], self.y_true[:n], self.label_names, self.base_probs[:n])


def quality(probs: np.ndarray, ev: EvalSet, *, max_flip_examples: int = 5) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class F1, their change from fp32 with a paired test (is the drop real?),
    and the prediction flips."""
    ours = classification_metrics(ev.y_true, probs, ev.label_names)
    base = classification_metrics(ev.y_true, ev.base_probs, ev.label_names)
    pred, base_pred = probs.argmax(1), ev.base_probs.argmax(1)
    flipped = np.flatnonzero(pred != base_pred)
    names = ev.label_names
    examples = [{"input": str(ev.texts[i]) if isinstance(ev.texts[i], str) else f"example {i}",
                 "true": names[ev.y_true[i]], "fp32": names[base_pred[i]], "compressed": names[pred[i]]}
                for i in flipped[:max_flip_examples]]
    return {
        "n_eval": len(ev.y_true),
        "accuracy": ours["accuracy"],
        "macro_f1": ours["macro_f1"],
        "delta_accuracy": ours["accuracy"] - base["accuracy"],
        "delta_macro_f1": ours["macro_f1"] - base["macro_f1"],
        "significance": {k: v.to_dict() for k, v in paired_comparison(
            ev.y_true, pred, base_pred, names).items() if k in ("accuracy", "macro_f1")},
        "per_class_f1_delta": {n: ours["per_class"][n]["f1"] - base["per_class"][n]["f1"] for n in names},
        "flips": int(len(flipped)),
        "flip_examples": examples,
    }


# --- speed ---------------------------------------------------------------------------------------------


def _seconds(model, batch) -> float:
    start = time.perf_counter()
    model.predict_proba(batch, batch_size=len(batch))
    return time.perf_counter() - start


def time_candidates(models: dict[str, tuple[Any, int]], inputs, *, rounds: int, baseline: str = "fp32",
                    say: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Batch-1 latency and batch-32 throughput of every model, interleaved example by example.

    ``models`` maps a name to ``(model, number of inputs to time it on)``. Each example is run through
    every model in turn (in an order that rotates from example to example) before the next example, so a
    change of load on a shared machine hits all models alike; ``speedup_b1`` is the median over examples
    (and rounds) of the per-example ratio ``baseline time / model time``. Latencies are per example in ms, medians and 95th percentiles
    over all rounds; the first two examples and one batch per model are run untimed as warm-up.
    """
    for model, n in models.values():
        model.predict_proba(inputs[:2], batch_size=1)
        model.predict_proba(inputs[:min(n, 32)], batch_size=32)
    n_max = max(n for _, n in models.values())
    lat = {k: np.full((rounds, n_max), np.nan) for k in models}
    done = {k: [0.0, 0] for k in models}
    names = list(models)
    for r in range(rounds):
        for i in range(n_max):
            for j in range(len(names)):  # the order rotates, so no model always runs right after another
                name = names[(i + j) % len(names)]
                model, n = models[name]
                if i < n:
                    lat[name][r, i] = _seconds(model, inputs[i:i + 1]) * 1000
        for start in range(0, n_max, 32):
            for name, (model, n) in models.items():
                if start < n:
                    batch = inputs[start:min(start + 32, n)]
                    done[name][0] += _seconds(model, batch)
                    done[name][1] += len(batch)
        say(f"timing round {r + 1}/{rounds} done")
    out = {}
    for name, t in lat.items():
        ok = ~np.isnan(t)
        ratio = lat[baseline][ok] / t[ok] if baseline in lat else np.array([np.nan])
        out[name] = {"latency_p50_ms": float(np.median(t[ok])), "latency_p95_ms": float(np.percentile(t[ok], 95)),
                     "throughput_b32": done[name][1] / done[name][0], "speedup_b1": float(np.median(ratio)),
                     "rounds_p50_ms": [round(float(np.nanmedian(row)), 3) for row in t]}
    return out


def batch_drift(model, inputs) -> float:
    """Max |probability change| of each example scored alone and inside one batch of all ``inputs`` (varied
    lengths, padded to the longest): 0 up to float rounding for a batch-independent model."""
    alone = np.concatenate([model.predict_proba(inputs[i:i + 1], batch_size=1) for i in range(len(inputs))])
    return float(np.abs(model.predict_proba(inputs, batch_size=len(inputs)) - alone).max())


def batching(model, drift: float | None) -> str:
    """The compression table's batching cell."""
    if getattr(model, "per_example", False):
        return "one at a time"
    if drift is None or drift <= BATCH_TOLERANCE:
        return "batched"
    return "batched, batch-dependent"


def result(c: Candidate, q: dict[str, Any], timing: dict[str, Any] | None,
           drift: float | None = None) -> CompressionResult:
    dense, packed = artifact_sizes(c.artifact)
    t = timing or {}
    details = dict(c.details)
    if "rounds_p50_ms" in t:
        details["rounds_p50_ms"] = t["rounds_p50_ms"]
    return CompressionResult(
        method=c.method, precision=c.precision, **q, params_total=c.params_total, params_nonzero=c.params_nonzero,
        file_bytes=dense, file_bytes_gzip=packed, latency_p50_ms=t.get("latency_p50_ms"),
        latency_p95_ms=t.get("latency_p95_ms"), throughput_b32=t.get("throughput_b32"),
        speedup_b1=t.get("speedup_b1"), batching=batching(c.model, drift), batch_drift=drift, notes=c.notes,
        details=details)


# --- the table ---------------------------------------------------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def _delta(value: float, test: dict | None) -> str:
    """A change in points with its paired interval and p (``-0.45 [-0.90, -0.05], p = 0.04``)."""
    text = f"{value * 100:+.2f}"
    if not test or (test["difference"] == 0 and test["interval"] == [0.0, 0.0]):
        return text
    lo, hi = test["interval"]
    mark = "" if test["significant"] else " (n.s.)"
    return f"{text} [{lo * 100:+.2f}, {hi * 100:+.2f}], {p_phrase(test)}{mark}"


def _batching_cell(r: dict[str, Any]) -> str:
    drift = r.get("batch_drift")
    return r.get("batching", "batched") + ("" if drift is None else f" ({drift:.1g})")


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """The compression table (one row per method) as Markdown."""
    head = ("| method | precision | n | accuracy | Δ acc (pts) [95% CI], McNemar p | macro-F1 | Δ F1 (pts) [95% CI], p | "
            "flips | params | non-zero | file MB | gzip MB | p50 ms (b1) | p95 ms (b1) | ex/s (b32) | speed-up b1 | "
            "batching (max Δp alone vs batched) |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        sig = r.get("significance") or {}
        cells = [r["method"], r["precision"], r["n_eval"], f"{r['accuracy']:.4f}",
                 _delta(r["delta_accuracy"], sig.get("accuracy")), f"{r['macro_f1']:.4f}",
                 _delta(r["delta_macro_f1"], sig.get("macro_f1")),
                 r["flips"], f"{r['params_total'] / 1e6:.2f}M", f"{r['params_nonzero'] / 1e6:.2f}M",
                 _mb(r["file_bytes"]), _mb(r["file_bytes_gzip"]),
                 "-" if r["latency_p50_ms"] is None else f"{r['latency_p50_ms']:.2f}",
                 "-" if r["latency_p95_ms"] is None else f"{r['latency_p95_ms']:.2f}",
                 "-" if r["throughput_b32"] is None else f"{r['throughput_b32']:.0f}",
                 "-" if r["speedup_b1"] is None else f"{r['speedup_b1']:.2f}x",
                 _batching_cell(r)]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"
