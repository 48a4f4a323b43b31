"""Compare pooling heads on one config (seed 000's table): one run per head, one Markdown table.

    python benchmarks/compare_pooling.py configs/emotion-minilm.yaml --out benchmarks/results/pooling.md
    python benchmarks/compare_pooling.py CONFIG --pooling cls mean --set train.epochs=1

Each head trains with the config as it is (only ``model.pooling`` changes); the table rows are written
as soon as each run ends, so an interrupted comparison keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from emolab.config import load_config
from emolab.pipeline import run

HEADER = ("| pooling | val loss | train loss | val accuracy | test accuracy | test macro-F1 | train s | device |\n"
          "|---|---|---|---|---|---|---|---|\n")


def row(run_dir: Path, pooling: str) -> str:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    best = max(history, key=lambda h: h.get("val_macro_f1", 0))  # the restored (best) epoch
    manifest = json.loads((run_dir / "manifest.json").read_text())
    device = manifest["hardware"].get("gpu", f"CPU x{manifest['hardware']['cpu_count']}")
    v, t = metrics["validation"], metrics["test"]
    return (f"| {pooling} | {v['cross_entropy']:.4f} | {best['train_loss']:.4f} | {v['accuracy']:.4f} | "
            f"{t['accuracy']:.4f} | {t['macro_f1']:.4f} | {manifest['wall_times']['train_s']:.0f} | {device} |\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--pooling", nargs="+", default=["cls", "mean", "max", "attention", "mean-max"])
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--out", default="benchmarks/results/pooling.md")
    ap.add_argument("--runs", default="runs/pooling")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# Pooling heads: {args.config} {' '.join(args.overrides)}\n\n" + HEADER)
    for pooling in args.pooling:
        cfg = load_config(args.config, args.overrides + [f"model.pooling={pooling}", f"output.dir={args.runs}",
                                                         f"output.name={Path(args.config).stem}-{pooling}",
                                                         "eval.report=false"])
        start = time.perf_counter()
        run_dir = run(cfg, overwrite=True)
        with out.open("a") as fh:
            fh.write(row(run_dir, pooling))
        print(f"{pooling}: done in {time.perf_counter() - start:.0f}s")
    print(out.read_text())


if __name__ == "__main__":
    main()
