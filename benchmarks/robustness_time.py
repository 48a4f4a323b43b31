"""Time ``emolab robustness`` on a transformer run without training one: a run folder holding the
configs/emotion-minilm.yaml model with an untrained head (the text suite's cost is prediction, which the
head does not change), then the default text suite on a subset of the test split.

    python benchmarks/robustness_time.py --out /tmp/rob-runs/minilm-untrained-head --max-examples 300 \
        [--results benchmarks/results/robustness-time.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from emolab.config import dump_config, load_config
from emolab.data import load_dataset
from emolab.models.registry import create_model
from emolab.robustness.evaluate import robustness_run
from record import Record

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the run folder to create (must not exist)")
    ap.add_argument("--max-examples", type=int, default=300)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "emotion-minilm.yaml")
    ap.add_argument("--results", type=Path, default=None, help="where to write the timing (Markdown, JSON beside)")
    args = ap.parse_args()
    record = Record()
    cfg = load_config(args.config)
    labels = load_dataset(cfg.data, cfg.seed).labels
    args.out.mkdir(parents=True)
    (args.out / "config.yaml").write_text(dump_config(cfg))
    create_model(cfg.model, labels).save(args.out / "model")
    t0 = time.perf_counter()
    report = robustness_run(args.out, max_examples=args.max_examples)
    wall = time.perf_counter() - t0
    predicted = report.n + sum(c.changed for c in report.checks)
    lines = ["# Time of `emolab robustness` (text suite, untrained head)", "", f"Command: `{record.command}`", "",
             f"{report.n} examples, {predicted} texts predicted, {wall:.1f} s: {predicted / wall:.1f} texts/s; "
             f"the full 2000-example test split would predict about {predicted * 2000 / report.n:.0f} texts"]
    record.finish(lines, args.results, {"config": args.config, "examples": report.n, "texts_predicted": predicted,
                                        "seconds": wall})


if __name__ == "__main__":
    main()
