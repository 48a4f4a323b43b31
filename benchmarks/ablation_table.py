"""The table of an ablation run with seeds (``matrix: {cells: [...]}`` + ``seeds:``): every cell against the
baseline cell, seed by seed on the same test examples.

    emolab run configs/emotion-minilm-ablation.yaml
    python benchmarks/ablation_table.py runs/emotion-minilm-ablation --baseline baseline \
        --classes surprise love --out benchmarks/results/text-augmentation-ablation.md

Per cell: test accuracy and macro-F1 as mean ± sd over the seeds (and each seed's 95% bootstrap interval), the
F1 of the named classes, training time; against the baseline, the mean change in macro-F1 and accuracy, the
paired-bootstrap (macro-F1) and McNemar (accuracy) tests of each seed against the baseline's run with the same
seed (same training slice and initialisation: only the cell's factor differs), and a paired t-test over seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import stats

from emolab.compare import test_against_best
from emolab.evaluation import metrics_with_intervals
from emolab.rundir import open_run
from emolab.significance import p_phrase
from record import Record


def cell_runs(folder: Path) -> dict[str, dict[int, object]]:
    out: dict[str, dict[int, object]] = {}
    for metrics in sorted(folder.glob("*/seed-*/metrics.json")):
        run = open_run(metrics.parent)
        out.setdefault(metrics.parent.parent.name, {})[int(run.raw_config["seed"])] = run
    return out


def ms(values) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.4f} ± {a.std(ddof=1) if len(a) > 1 else 0:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--baseline", default="baseline")
    ap.add_argument("--classes", nargs="*", default=[])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--command", default="emolab run configs/emotion-minilm-ablation.yaml")
    args = ap.parse_args()
    record = Record()

    cells = cell_runs(args.folder)
    cells = {args.baseline: cells[args.baseline], **{k: v for k, v in cells.items() if k != args.baseline}}
    base = cells[args.baseline]
    lines = [f"# Ablation: {args.folder.name}", "", f"Command: `{args.command}`, then `python benchmarks/ablation_table.py "
             f"{args.folder} --baseline {args.baseline} --classes {' '.join(args.classes)} --out {args.out}`.", "",
             "Test split; mean ± standard deviation over the seeds. Δ: the cell minus the baseline, seed by seed on the same "
             "test examples (same seed: same training slice and initialisation, only the cell's factor differs); "
             "significant seeds: paired bootstrap on macro-F1 / McNemar on accuracy at p < 0.05; t-test: paired over "
             "the seeds (training noise).", "",
             "| cell | seeds | test accuracy | test macro-F1 | " + " | ".join(f"{c} F1" for c in args.classes) +
             " | Δ macro-F1 (mean) | significant seeds (F1) | t-test p (F1) | Δ accuracy (mean) | significant seeds (acc) | "
             "train s (mean) |",
             "|---|---|---|---|" + "---|" * len(args.classes) + "---|---|---|---|---|---|"]
    details = ["", "## Per seed", "", "| cell | seed | accuracy [95% CI] | macro-F1 [95% CI] | Δ macro-F1 vs baseline "
               "[95% CI], p | Δ accuracy, McNemar p |", "|---|---|---|---|---|---|"]
    figures = {"command": args.command, "baseline": args.baseline, "classes": args.classes, "cells": {}}
    for name, runs in cells.items():
        seeds = sorted(runs)
        m = {s: metrics_with_intervals(runs[s])["test"] for s in seeds}
        cell = figures["cells"][name] = {"seeds": {s: {"accuracy": m[s]["accuracy"], "macro_f1": m[s]["macro_f1"],
                                                      "intervals": m[s]["intervals"]} for s in seeds}}
        acc, f1 = [m[s]["accuracy"] for s in seeds], [m[s]["macro_f1"] for s in seeds]
        per_class = [ms([m[s]["per_class"][c]["f1"] for s in seeds]) for c in args.classes]
        train = np.mean([runs[s].manifest.get("wall_times", {}).get("train_s", np.nan) for s in seeds])
        d_f1, d_acc, sig_f1, sig_acc = [], [], 0, 0
        for s in seeds:
            ci = m[s]["intervals"]
            cell_text = f"| {name} | {s} | {m[s]['accuracy']:.4f} [{ci['accuracy'][0]:.3f}, {ci['accuracy'][1]:.3f}] | " \
                        f"{m[s]['macro_f1']:.4f} [{ci['macro_f1'][0]:.3f}, {ci['macro_f1'][1]:.3f}] |"
            if name == args.baseline or s not in base:
                details.append(cell_text + " – | – |")
                continue
            result, why = test_against_best(base[s], runs[s])
            if result is None:
                cell["seeds"][s]["not_tested"] = why
                details.append(cell_text + f" not tested: {why} | – |")
                continue
            f, a = result["macro_f1"], result["accuracy"]
            cell["seeds"][s]["vs_baseline"] = result
            d_f1.append(f["difference"])
            d_acc.append(a["difference"])
            sig_f1 += f["significant"]
            sig_acc += a["significant"]
            details.append(cell_text + f" {f['difference']:+.4f} [{f['interval'][0]:+.3f}, {f['interval'][1]:+.3f}], "
                                       f"{p_phrase(f)} | {a['difference']:+.4f}, {p_phrase(a)} |")
        cell.update({"per_class_f1": {c: [m[s]["per_class"][c]["f1"] for s in seeds] for c in args.classes},
                     "train_s_mean": train})
        if name == args.baseline:
            tail = "– | – | – | – | – |"
        else:
            base_f1 = [metrics_with_intervals(base[s])["test"]["macro_f1"] for s in seeds if s in base]
            t_p = stats.ttest_rel(f1, base_f1).pvalue if len(seeds) > 1 and len(base_f1) == len(f1) else float("nan")
            cell.update({"delta_macro_f1_mean": np.mean(d_f1), "significant_f1": sig_f1, "tested": len(d_f1),
                         "t_test_p": t_p, "delta_accuracy_mean": np.mean(d_acc), "significant_accuracy": sig_acc})
            tail = (f"{np.mean(d_f1):+.4f} | {sig_f1}/{len(d_f1)} | {t_p:.2g} | {np.mean(d_acc):+.4f} | "
                    f"{sig_acc}/{len(d_acc)} |")
        lines.append(f"| {name} | {', '.join(map(str, seeds))} | {ms(acc)} | {ms(f1)} | " +
                     "".join(f"{c} | " for c in per_class) + tail + f" {train:.0f} |")
    record.finish(lines + details, args.out, figures)


if __name__ == "__main__":
    main()
