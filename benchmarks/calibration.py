"""Calibration of finished runs, measured without changing them: each method fitted on the run's validation
predictions (as `emolab calibrate` does) and ECE / NLL / Brier measured before and after on its test predictions,
with 95% bootstrap intervals and the paired change. Multi-label runs: temperature per label vs Platt per label.

    python benchmarks/calibration.py runs/emotion-minilm runs/fer2013-vgg --out benchmarks/results/calibration.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import Record  # noqa: E402

from emolab import calibration as cal  # noqa: E402
from emolab.rundir import open_run  # noqa: E402
from emolab.significance import with_interval  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    record = Record()
    lines = ["# Calibration of finished runs", "", f"`{record.command}`", "",
             "Fitted on each run's validation predictions (NLL), measured on its test predictions; in brackets 95% "
             "percentile-bootstrap intervals (seeded by the run's seed), the change on the same resamples. "
             "Single-label ECE: top-label, 15 bins; multi-label: over every label-probability.", "",
             "| run | model | method | fitted | test n | ECE before | ECE after | ECE change | NLL before -> after | "
             "Brier before -> after | accuracy before -> after | fit s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    figures = {"resamples": args.resamples, "rows": []}
    for path in args.runs:
        run = open_run(path)
        multi = run.card.labels.multi_label
        val, test = run.predictions("validation"), run.predictions("test")
        for method in (("temperature", "platt") if multi else ("temperature",)):
            t = time.perf_counter()
            fitted = cal.fit(val.y_true, val.probs, multi_label=multi, method=method)
            seconds = time.perf_counter() - t
            m = cal.calibration_metrics(test.y_true, test.probs, fitted.apply(test.probs), multi_label=multi,
                                        n_bins=run.config.eval.ece_bins, resamples=args.resamples, seed=run.config.seed)
            e = m["ece"]
            acc = (f"{m['accuracy']['before']:.4f} -> {m['accuracy']['after']:.4f}" if "accuracy" in m else "n/a")
            values = ("T " + ", ".join(f"{x:.2f}" for x in fitted.temperature) if method == "temperature"
                      else "per-label slope/offset")
            figures["rows"].append({"run": run.name, "model": run.card.summary, "method": method,
                                    "temperature": fitted.temperature if method == "temperature" else None,
                                    "fit_s": seconds, "metrics": m})
            lines.append(
                f"| {run.name} | {run.card.summary} | {method} | {values} | {m['n']} | "
                f"{with_interval(e['before'], e.get('before_interval'))} | {with_interval(e['after'], e.get('after_interval'))} | "
                f"{with_interval(e['change'], e.get('change_interval'))} ({e['relative_change']:+.0%}) | "
                f"{m['nll']['before']:.4f} -> {m['nll']['after']:.4f} | {m['brier']['before']:.4f} -> {m['brier']['after']:.4f} | "
                f"{acc} | {seconds:.2f} |")
    record.finish(lines, args.out, figures)


if __name__ == "__main__":
    main()
