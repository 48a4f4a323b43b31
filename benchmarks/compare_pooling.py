"""Compare pooling heads on one config (seed 000's table): one run per head, one Markdown table.

    python benchmarks/compare_pooling.py configs/emotion-minilm.yaml --out benchmarks/results/pooling.md
    python benchmarks/compare_pooling.py CONFIG --pooling cls mean --set train.epochs=1

Each head trains with the config as it is (only ``model.pooling`` changes); the table (and its JSON) is
written again as each run ends, so an interrupted comparison keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from emolab.config import load_config
from emolab.pipeline import run
from record import Record

HEADER = ["| pooling | val loss | train loss | val accuracy | test accuracy | test macro-F1 | train s | device |",
          "|---|---|---|---|---|---|---|---|"]


def figures(run_dir: Path, pooling: str) -> dict:
    """One head's figures, from its run folder."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    best = max(history, key=lambda h: h.get("val_macro_f1", 0))  # the restored (best) epoch
    manifest = json.loads((run_dir / "manifest.json").read_text())
    device = manifest["hardware"].get("gpu", f"CPU x{manifest['hardware']['cpu_count']}")
    v, t = metrics["validation"], metrics["test"]
    return {"pooling": pooling, "run": str(run_dir), "val_loss": v["cross_entropy"], "train_loss": best["train_loss"],
            "val_accuracy": v["accuracy"], "test_accuracy": t["accuracy"], "test_macro_f1": t["macro_f1"],
            "train_s": manifest["wall_times"]["train_s"], "device": device}


def row(f: dict) -> str:
    return (f"| {f['pooling']} | {f['val_loss']:.4f} | {f['train_loss']:.4f} | {f['val_accuracy']:.4f} | "
            f"{f['test_accuracy']:.4f} | {f['test_macro_f1']:.4f} | {f['train_s']:.0f} | {f['device']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--pooling", nargs="+", default=["cls", "mean", "max", "attention", "mean-max"])
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--out", default="benchmarks/results/pooling.md")
    ap.add_argument("--runs", default="runs/pooling")
    args = ap.parse_args()
    record = Record()
    lines = [f"# Pooling heads: {args.config} {' '.join(args.overrides)}", "", *HEADER]
    heads = {"config": args.config, "overrides": args.overrides, "heads": []}
    record.save(lines, args.out, heads)
    for pooling in args.pooling:
        cfg = load_config(args.config, args.overrides + [f"model.pooling={pooling}", f"output.dir={args.runs}",
                                                         f"output.name={Path(args.config).stem}-{pooling}",
                                                         "eval.report=false"])
        start = time.perf_counter()
        run_dir = run(cfg, overwrite=True)
        heads["heads"].append(figures(run_dir, pooling))
        lines.append(row(heads["heads"][-1]))
        record.save(lines, args.out, heads)
        print(f"{pooling}: done in {time.perf_counter() - start:.0f}s")
    record.finish(lines, args.out, heads)


if __name__ == "__main__":
    main()
