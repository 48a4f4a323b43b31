"""``emolab compress``: every chosen method on one run's model, measured alike, written to
``<run>/compression/`` (results.json, results.md, sweep.json, plots, the compressed models that can be
saved).

The folder is built as ``compression.partial`` and renamed when complete; an existing ``compression/``
is replaced only with ``overwrite``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emolab import runfiles
from emolab.compression.measure import (BATCH_TOLERANCE, CompressionResult, EvalSet, batch_drift, quality, result,
                                       table_markdown, time_candidates)
from emolab.compression.methods import METHODS, CompressOptions, Context, fp32, list_methods, model_kind
from emolab.errors import EmolabError
from emolab.outputs import replace_folder
from emolab.rundir import atomic_write, to_json

Say = Callable[[str], None]


def _eval_set(model, ds, split: str, n: int | None, seed: int, batch_size: int) -> EvalSet:
    from emolab.compression.finetune import subsample

    part = subsample(ds, split, n, seed).split(split)
    texts = list(part.inputs) if isinstance(part.inputs, list) else part.inputs
    probs = model.predict_proba(texts, batch_size=batch_size)
    return EvalSet(texts, np.asarray(part.labels), model.labels.names, probs)


def _prepare_folder(run: Path, name: str, overwrite: bool) -> Path:
    final = run / name
    if final.exists() and not overwrite:
        raise EmolabError(f"{final} exists", hint="add --overwrite to replace it")
    partial = run / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def compress(run_path: str | Path, options: CompressOptions, *, overwrite: bool = False,
             say: Say = print) -> list[CompressionResult]:
    """Compress the run's model with every method in ``options.methods``; returns the table rows."""
    import torch

    from emolab.models import load_model
    from emolab.rundir import load_run_config

    run = Path(run_path)
    cfg = load_run_config(run)
    model = load_model(run)
    threads_before = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        return _compress(run, cfg, model, options, overwrite=overwrite, say=say)
    finally:
        torch.set_num_threads(threads_before)


def _compress(run: Path, cfg, model, options: CompressOptions, *, overwrite: bool, say: Say) -> list[CompressionResult]:
    import torch

    from emolab.data import load_dataset
    from emolab.models.torch_base import TorchClassifier
    from emolab.seeding import seed_everything

    if not isinstance(model, TorchClassifier):
        raise EmolabError(f"model {model.name!r} ({model.card().summary}) has no neural network to compress",
                          hint="compress a transformer or CNN run")
    kind = model_kind(model)
    wrong = [m for m in options.methods if m not in list_methods(kind)]
    if wrong:
        raise EmolabError(f"method {wrong[0]!r} does not apply to {kind} models",
                          hint=f"for this run choose from: {', '.join(list_methods(kind))}")
    seed_everything(cfg.seed)
    work = _prepare_folder(run, runfiles.COMPRESSION, overwrite)
    say(f"loading {cfg.data.name}")
    ds = load_dataset(cfg.data, cfg.seed)
    split = "test" if "test" in ds.splits else cfg.eval.splits[-1]
    ev = _eval_set(model, ds, split, options.max_eval_examples, cfg.seed, cfg.eval.batch_size)
    ctx = Context(model, cfg, ds, options, ev, work / "models", say)

    candidates, scores = fp32(ctx), [quality(ev.base_probs, ev)]
    for name in options.methods:
        say(f"{name}")
        for c in METHODS[name][0](ctx):
            q = ctx.score(c.model, c.max_eval_examples)
            say(f"  {c.method}: accuracy {q['accuracy']:.4f} ({q['delta_accuracy'] * 100:+.2f} points), "
                f"{q['flips']} flips")
            candidates.append(c)
            scores.append(q)

    say(f"timing {len(candidates)} models side by side, {options.timing_rounds} round(s)")
    n_half = min(options.timing_examples, options.half_timing_examples)
    timing = time_candidates({c.method: (c.model, n_half if c.precision in ("fp16", "bf16") else options.timing_examples)
                              for c in candidates}, ev.texts, rounds=options.timing_rounds, say=say)
    drift_inputs = ev.texts[:16]
    rows = [result(c, q, timing[c.method], batch_drift(c.model, drift_inputs)) for c, q in zip(candidates, scores)]
    threads = {"torch_threads": torch.get_num_threads(), "onnxruntime_threads": options.threads or "default",
               "included": f"test-time augmentation ({cfg.eval.tta})" if kind == "image" else "tokenisation"}
    _write(work, rows, ctx.sweep, options, split, threads)
    final = replace_folder(work, run / runfiles.COMPRESSION)
    say(f"wrote {final}/results.md")
    return rows


# --- output ------------------------------------------------------------------------------------------------


def results_markdown(rows: list[dict[str, Any]], sweep: list[dict[str, Any]], options: CompressOptions,
                     split: str, threads: dict) -> str:
    names = list(rows[0]["per_class_f1_delta"]) if rows else []
    included = threads.get("included", "tokenisation")
    shown = {k: v for k, v in threads.items() if k != "included"}
    out = ["# Compression results", "",
           f"Scored on the {split} split; Δ columns are against the fp32 model on the same examples, with a 95% "
           "paired-bootstrap interval and p-value (McNemar's exact test for accuracy); n.s.: not significant, the "
           "drop may be noise "
           f"(fp16/bf16 rows on a subset: see n). Latency: per example at batch 1, median and p95 over "
           f"{options.timing_rounds} round(s) of {options.timing_examples} examples "
           f"({min(options.timing_examples, options.half_timing_examples)} for fp16/bf16), each example run "
           "through every model in turn; speed-up: median per-example ratio of fp32 time to the model's; "
           f"{included} included, CPU threads {shown}; ex/s: throughput at batch 32 (models marked 'one at a time' "
           "run batches example by example). Batching: 'batched' models give an example the same scores alone or "
           f"inside a batch (max |Δ probability| over the first 16 examples, alone vs in one batch, in brackets; "
           f"<= {BATCH_TOLERANCE:g} counts as independent); 'one at a time' models (dynamic int8: activations scaled "
           "per call, so batch-mates would change an example's scores) refuse to batch. File sizes: dense weights "
           "file and its gzip -6.", "",
           "**Unstructured pruning stores zeros in dense tensors: it changes neither the dense file size nor the "
           "latency; only the compressed (gzip) size shrinks.**", "", table_markdown(rows),
           "## Per-class F1 change (points)", "",
           "| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in rows:
        out.append(f"| {r['method']} | " + " | ".join(f"{r['per_class_f1_delta'][n] * 100:+.2f}" for n in names) + " |")
    out += ["", "## Notes and prediction flips", ""]
    for r in rows:
        out.append(f"- **{r['method']}**: {r['notes'] or '-'}; {r['flips']} prediction(s) changed")
        for ex in r["flip_examples"][:3]:
            out.append(f"  - \"{ex['input']}\" (true {ex['true']}): {ex['fp32']} → {ex['compressed']}")
    if sweep:
        out += ["", "## Unstructured sparsity sweep", "", "| scope | precision | target | sparsity | n | accuracy | Δ acc (pts) | macro-F1 |",
                "|---|---|---|---|---|---|---|---|"]
        for s in sweep:
            out.append(f"| {s['scope']} | {s['precision']} | {s['target']:.0%} | {s['sparsity']:.3f} | {s['n_eval']} | "
                       f"{s['accuracy']:.4f} | {s['delta_accuracy'] * 100:+.2f} | {s['macro_f1']:.4f} |")
    return "\n".join(out) + "\n"


def _write(work: Path, rows: list[CompressionResult], sweep: list[dict], options: CompressOptions, split: str,
           threads: dict) -> None:
    from emolab import plots

    dicts = [r.to_dict() for r in rows]
    atomic_write(work / runfiles.name_in_folder(runfiles.COMPRESSION_RESULTS), to_json(dicts) + "\n")
    atomic_write(work / "sweep.json", to_json(sweep) + "\n")
    atomic_write(work / "options.json", to_json({**options.__dict__, **threads}) + "\n")
    atomic_write(work / "results.md", results_markdown(dicts, sweep, options, split, threads))
    plots.pareto(dicts, work / runfiles.name_in_folder(runfiles.PARETO_PLOT))
    for precision in ("fp32", "fp16"):
        points = [s for s in sweep if s["precision"] == precision]
        if points:
            plots.sparsity_sweep(points, work / runfiles.name_in_folder(runfiles.sparsity_plot(precision)),
                                 title=f"Unstructured pruning: accuracy vs sparsity ({precision})")
