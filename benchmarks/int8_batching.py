"""Int8 text models that batch: every model kind of one run, side by side in one process.

    python benchmarks/int8_batching.py --run runs/emotion-minilm --rounds 3 --batch-sizes 1,8,32 --max-texts 400 \
        --out benchmarks/results/int8-batching-demo.md

Writes, from the run's fp32 model: the fp32 ONNX export, the same graph through ONNX Runtime's transformer
optimizer (fused attention, LayerNorm, GELU), the static int8 export (what ``emolab export --int8`` writes
now) and the dynamic int8 export (what it wrote before). Then, on the test split:

- quality of every kind against the fp32 PyTorch model: accuracy and macro-F1 with 95% bootstrap intervals,
  paired differences (McNemar's exact p for accuracy, paired bootstrap for macro-F1), labels that differ;
- batch independence: each of the first ``--check`` texts scored alone, and inside batches of 8 and 32
  (length-sorted, padded to the batch's longest), max |difference| of the probabilities;
- throughput in process (tokenisation included): texts/s over the whole split at each batch size, the models
  run in turn (order rotating) within each round, medians over rounds. ``dynamic int8, batched`` runs the old
  graph batched anyway (its scores then depend on batch-mates): the best today's export could do.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from record import Record  # noqa: E402

from emolab.compression.methods import calibration_texts  # noqa: E402
from emolab.compression.quantize import export_onnx, optimize_text_graph  # noqa: E402
from emolab.data import load_dataset  # noqa: E402
from emolab.metrics import classification_metrics  # noqa: E402
from emolab.models import load_model  # noqa: E402
from emolab.models.onnx import ONNX_FILE, OnnxClassifier  # noqa: E402
from emolab.rundir import load_run_config  # noqa: E402
from emolab.significance import intervals, paired_comparison  # noqa: E402


class BatchedAnyway(OnnxClassifier):
    """A dynamic int8 graph batched although its scores then depend on batch-mates (for timing only)."""

    per_example = False


def build(run: Path, work: Path, say=print) -> dict:
    cfg = load_run_config(run)
    model = load_model(run)
    ds = load_dataset(cfg.data, cfg.seed)
    say("exporting fp32, static int8 and dynamic int8")
    fp32 = export_onnx(model, work / "onnx", source=str(run))
    opt_dir = work / "onnx-optimized"
    shutil.copytree(work / "onnx", opt_dir)
    optimize_text_graph(work / "onnx" / ONNX_FILE, opt_dir / ONNX_FILE, model.module.encoder.config, attention=True)
    optimized = OnnxClassifier.load(opt_dir)
    t = time.perf_counter()
    static = export_onnx(model, work / "onnx-int8", int8=True, source=str(run),
                         calibration=calibration_texts(ds, cfg.seed))
    calib_s = time.perf_counter() - t
    dynamic = export_onnx(model, work / "onnx-int8-dynamic", int8=True, dynamic=True, source=str(run))
    batched = BatchedAnyway.load(work / "onnx-int8-dynamic")
    models = {"fp32 PyTorch": model, "fp32 ONNX": fp32, "fp32 ONNX optimized": optimized,
              "static int8 ONNX (new)": static, "dynamic int8 ONNX (old)": dynamic,
              "dynamic int8 ONNX, batched anyway": batched}
    return {"models": models, "test": ds.split("test"), "labels": model.labels.names, "calibration_s": calib_s,
            "sizes": {k: (work / d / ONNX_FILE).stat().st_size for k, d in
                      [("fp32 ONNX", "onnx"), ("fp32 ONNX optimized", "onnx-optimized"),
                       ("static int8 ONNX (new)", "onnx-int8"), ("dynamic int8 ONNX (old)", "onnx-int8-dynamic")]}}


def quality(models: dict, texts: list, y: np.ndarray, names, say=print) -> dict:
    probs = {}
    for name, m in models.items():
        say(f"scoring {name}")
        probs[name] = m.predict_proba(texts, batch_size=32)
    base = probs["fp32 PyTorch"].argmax(1)
    out = {}
    for name, p in probs.items():
        pred = p.argmax(1)
        met = classification_metrics(y, p, names)
        ci = intervals(y, pred, names)
        paired = {k: v.to_dict() for k, v in paired_comparison(y, pred, base, names).items()
                  if k in ("accuracy", "macro_f1")}
        out[name] = {"accuracy": met["accuracy"], "macro_f1": met["macro_f1"], "accuracy_ci": ci["accuracy"],
                     "macro_f1_ci": ci["macro_f1"], "vs_fp32": paired, "labels_differ": int((pred != base).sum()),
                     "max_abs_prob_diff_vs_fp32": float(np.abs(p - probs["fp32 PyTorch"]).max())}
    return out


def independence(models: dict, texts: list) -> dict:
    out = {}
    for name, m in models.items():
        alone = np.stack([m.predict_proba([t], batch_size=1)[0] for t in texts])
        out[name] = {f"b{b}": float(np.abs(m.predict_proba(texts, batch_size=b) - alone).max()) for b in (8, 32)}
    return out


def throughput(models: dict, texts: list, sizes: list[int], rounds: int, say=print) -> dict:
    for m in models.values():  # warm-up
        m.predict_proba(texts[:64], batch_size=32)
    secs = {(n, b): [] for n in models for b in sizes}
    names = list(models)
    for r in range(rounds):
        for i, b in enumerate(sizes):
            for j in range(len(names)):
                name = names[(i + j + r) % len(names)]
                if b != sizes[0] and getattr(models[name], "per_example", False):
                    continue  # runs one text at a time whatever the batch size: timed at the first size only
                start = time.perf_counter()
                models[name].predict_proba(texts, batch_size=b)
                secs[(name, b)].append(time.perf_counter() - start)
        say(f"round {r + 1}/{rounds} done")
    return {n: {str(b): {"texts_per_s": len(texts) / float(np.median(secs[(n, b)] or secs[(n, sizes[0])])),
                         "rounds_texts_per_s": [round(len(texts) / s, 1) for s in secs[(n, b)]]} for b in sizes}
            for n in models}


def _ci(v, ci) -> str:
    return f"{v * 100:.2f} [{ci[0] * 100:.2f}, {ci[1] * 100:.2f}]"


def _d(t) -> str:
    lo, hi = t["interval"]
    return f"{t['difference'] * 100:+.2f} [{lo * 100:+.2f}, {hi * 100:+.2f}], p {t['p_text']}"


def render(res: dict, command: str, machine: dict) -> list[str]:
    """The Markdown of the figures ``res``, measured by ``command`` on ``machine`` (a record's)."""
    sizes = res["batch_sizes"]
    tp = res["throughput"]
    lines = ["# Int8 text models that batch", "", f"Command: `{command}`", "",
             f"Run: `{res['run']}` ({res['run_note']}). Machine: {machine['processor']}, {machine['cpu_count']} cores; "
             f"{res['n_test']} test texts; throughput medians over {res['rounds']} rounds, models in turn "
             "(order rotating) within each round, tokenisation included, default threads.", "",
             "## Throughput (texts/s, in process)", "",
             "| model | " + " | ".join(f"b{b}" for b in sizes) + " | best | best / b1 | batch-independent |",
             "|---|" + "---|" * (len(sizes) + 3)]
    for n, row in tp.items():
        best = max(sizes, key=lambda b: row[str(b)]["texts_per_s"])
        bi = res["independence"][n]
        indep = "yes" if max(bi.values()) <= 1e-6 else f"**no** (max diff {max(bi.values()):.2g})"
        if n == "dynamic int8 ONNX (old)":
            indep += ", by running one text at a time"
        lines.append(f"| {n} | " + " | ".join(f"{row[str(b)]['texts_per_s']:.0f}" for b in sizes) +
                     f" | {row[str(best)]['texts_per_s']:.0f} (b{best}) | "
                     f"{row[str(best)]['texts_per_s'] / row['1']['texts_per_s']:.2f}x | {indep} |")
    s = res["targets"]
    lines += ["", "## Targets", "",
              f"- static int8 at batch 32 / its own batch 1: **{s['b32_over_b1']:.2f}x** (target >= 1.5x)",
              f"- static int8 at batch 32 / today's int8 export at its best batch: **{s['b32_over_old_best']:.2f}x** "
              f"(target >= 1.6x; today's export as shipped runs one text at a time: "
              f"{s['old_shipped']:.0f} texts/s; batched anyway, unsafe, its best is {s['old_best']:.0f} at b{s['old_best_b']})",
              f"- static int8 macro-F1 - fp32: **{s['delta_macro_f1'] * 100:+.2f} points** (target within 0.3 points, "
              f"not significantly worse: p {s['macro_f1_p']})", "",
              "## Quality on the test split (vs fp32 PyTorch, paired)", "",
              "| model | accuracy % [95% CI] | macro-F1 % [95% CI] | Δ acc pts [CI], McNemar p | Δ macro-F1 pts [CI], p | "
              "labels differ | max abs prob diff |", "|---|---|---|---|---|---|---|"]
    for n, q in res["quality"].items():
        lines.append(f"| {n} | {_ci(q['accuracy'], q['accuracy_ci'])} | {_ci(q['macro_f1'], q['macro_f1_ci'])} | "
                     f"{_d(q['vs_fp32']['accuracy'])} | {_d(q['vs_fp32']['macro_f1'])} | {q['labels_differ']} | "
                     f"{q['max_abs_prob_diff_vs_fp32']:.3g} |")
    lines += ["", f"## Batch independence (first {res['n_check']} test texts: alone vs inside batches)", "",
              "| model | max abs diff, batch 8 | batch 32 |", "|---|---|---|"]
    for n, d in res["independence"].items():
        lines.append(f"| {n} | {d['b8']:.2g} | {d['b32']:.2g} |")
    lines += ["", "## Model files", "", "| export | model.onnx MB |", "|---|---|"]
    lines += [f"| {n} | {b / 1e6:.1f} |" for n, b in res["sizes"].items()]
    lines += ["", f"Static int8 export (calibration on 256 training texts + quantization): "
              f"{res['calibration_s']:.0f} s."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--run-note", default="")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-sizes", default="1,8,16,32,64")
    ap.add_argument("--check", type=int, default=200, help="texts checked alone vs in batches")
    ap.add_argument("--max-texts", type=int, default=None, help="time on the first N test texts (default all)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    record = Record()
    work = Path(tempfile.mkdtemp(prefix="int8-batching-"))
    try:
        built = build(a.run, work)
        test = built["test"]
        texts, y = list(test.inputs), np.asarray(test.labels)
        models = built["models"]
        q = quality(models, texts, y, built["labels"])
        ind = independence(models, texts[:a.check])
        timed = texts[:a.max_texts] if a.max_texts else texts
        sizes = [int(b) for b in a.batch_sizes.split(",")]
        tp = throughput(models, timed, sizes, a.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    new, old = tp["static int8 ONNX (new)"], tp["dynamic int8 ONNX, batched anyway"]
    old_best_b = max(sizes, key=lambda b: max(old[str(b)]["texts_per_s"], tp["dynamic int8 ONNX (old)"][str(b)]["texts_per_s"]))
    old_best = max(max(old[str(b)]["texts_per_s"], tp["dynamic int8 ONNX (old)"][str(b)]["texts_per_s"]) for b in sizes)
    sq = q["static int8 ONNX (new)"]
    res = {"run": str(a.run), "run_note": a.run_note, "rounds": a.rounds, "batch_sizes": sizes,
           "n_test": len(timed), "n_check": a.check, "throughput": tp, "quality": q, "independence": ind,
           "sizes": built["sizes"], "calibration_s": built["calibration_s"],
           "targets": {"b32_over_b1": new["32"]["texts_per_s"] / new["1"]["texts_per_s"],
                       "b32_over_old_best": new["32"]["texts_per_s"] / old_best, "old_best": old_best,
                       "old_best_b": old_best_b, "old_shipped": tp["dynamic int8 ONNX (old)"]["32"]["texts_per_s"],
                       "delta_macro_f1": sq["macro_f1"] - q["fp32 PyTorch"]["macro_f1"],
                       "macro_f1_p": sq["vs_fp32"]["macro_f1"]["p_text"]}}
    record.finish(render(res, record.command, record.machine()), a.out, res)


if __name__ == "__main__":
    main()
