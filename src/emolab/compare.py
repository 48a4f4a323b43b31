"""``emolab compare``: leaderboards over finished runs, one per dataset and split (Markdown, CSV, bar chart,
overlaid curves). Runs scored on the same test examples are tested against the best of their group (paired
bootstrap on macro-F1, McNemar's exact test on accuracy); a run not significantly worse is tied with it."""

from __future__ import annotations

import csv
import glob
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from emolab import plots, runfiles
from emolab.data import dataset_spec
from emolab.errors import EmolabError
from emolab.evaluation import metrics_with_intervals
from emolab.metrics import lower_is_better
from emolab.rundir import Run, atomic_write, decision_thresholds, open_run
from emolab.significance import align_ids, decisions, p_phrase, paired_comparison, with_interval

SPLIT = "test"
COLUMNS = [("run", "run"), ("dataset", "dataset"), ("split", "split"), ("model", "model"), ("pooling", "pooling"),
           ("scheduler", "schedule"), ("parameters", "params"), ("val_loss", "val loss"),
           ("train_loss", "train loss"), ("val_accuracy", "val acc"), ("test_accuracy", "test acc [95% CI]"),
           ("macro_f1", "test macro-F1 [95% CI]"), ("delta_macro_f1", "Δ macro-F1 vs best [95% CI]"),
           ("p_macro_f1", "p"), ("delta_accuracy", "Δ acc vs best"), ("p_accuracy", "McNemar p"),
           ("verdict", "vs best"), ("train_s", "train s"), ("ms_per_example", "ms/example")]
CSV_EXTRA = ["test_accuracy_lo", "test_accuracy_hi", "macro_f1_lo", "macro_f1_hi", "delta_macro_f1_lo",
             "delta_macro_f1_hi"]


def history(run: Path) -> list[dict]:
    return open_run(run).history


def dataset_label(run: Run) -> str:
    """The dataset a run was scored on, as its leaderboard groups it (taxonomy and CSV file included)."""
    data = run.raw_config.get("data", {})
    name = run.manifest.get("dataset", {}).get("name") or data.get("name", "?")
    return dataset_spec(str(data.get("name", ""))).leaderboard_name(name, data)


def leaderboard_row(run: Path | Run) -> dict[str, Any]:
    """One run's line: dataset and split, model (as its card summarises it), pooling, size, losses,
    accuracies and macro-F1 with their intervals, train time, latency."""
    run = run if isinstance(run, Run) else open_run(run)
    card, metrics, manifest, hist = run.card, metrics_with_intervals(run), run.manifest, run.history
    best = max(hist, key=lambda h: h.get("val_macro_f1", 0)) if hist else {}
    test = metrics.get(SPLIT, {})
    ci = test.get("intervals", {})
    accuracy_key = "accuracy" if "accuracy" in test else "micro_f1"
    row = {"run": run.name, "path": str(run.path), "dataset": dataset_label(run), "split": SPLIT,
           "model": card.hyperparameters.get("backbone") or card.model,  # the card's summary is in the report
           "pooling": card.hyperparameters.get("pooling", "-"),
           "scheduler": run.raw_config.get("train", {}).get("scheduler") if card.training == "loop" else "-",
           "parameters": metrics.get("parameters"),
           "val_loss": metrics.get("validation", {}).get("cross_entropy"), "train_loss": best.get("train_loss"),
           "val_accuracy": metrics.get("validation", {}).get("accuracy"),
           "test_accuracy": test.get(accuracy_key), "macro_f1": test.get("macro_f1"),
           "train_s": manifest.get("wall_times", {}).get("train_s"),
           "ms_per_example": metrics.get("timing", {}).get("batch_1_p50_ms")}
    for key, source in (("test_accuracy", accuracy_key), ("macro_f1", "macro_f1")):
        lo_hi = ci.get(source) or [None, None]
        row[f"{key}_lo"], row[f"{key}_hi"] = lo_hi
    return row


def _decided(run: Run):
    """(ids, y_true, decisions, label names, multi-label) of a run's test predictions."""
    preds = run.predictions(SPLIT)
    multi = preds.labels.multi_label
    return preds.ids.astype(str), preds.y_true, \
        decisions(preds.probs, multi_label=multi, thresholds=decision_thresholds(run.path, preds.labels.names)), preds.labels.names, multi


def test_against_best(best: Run, other: Run, *, seed: int = 0) -> tuple[dict[str, Any] | None, str | None]:
    """``other - best`` on the examples both were scored on, or (None, why not)."""
    try:
        ids_b, y_b, d_b, names_b, multi = _decided(best)
        ids_o, y_o, d_o, names_o, _ = _decided(other)
    except EmolabError as exc:
        return None, exc.message
    if list(names_b) != list(names_o):
        return None, f"different label sets ({', '.join(names_o)} vs {', '.join(names_b)})"
    take = align_ids(ids_b, ids_o)
    if take is None:
        common = len(set(ids_b) & set(ids_o))
        return None, (f"scored on different {SPLIT} examples ({len(ids_o)} vs {len(ids_b)}, {common} in common): "
                      "a paired test needs the same examples")
    if not np.array_equal(np.asarray(y_o)[take], np.asarray(y_b)):
        return None, f"the same {SPLIT} ids carry different labels: not the same data"
    result = paired_comparison(y_b, np.asarray(d_o)[take], d_b, names_b, multi_label=multi, seed=seed)
    return {k: v.to_dict() for k, v in result.items()}, None


def _add_significance(rows: list[dict], runs: dict[str, Run], say) -> None:
    """Fill each row's difference from the group's reference: its best run by test macro-F1 (whatever the
    table is sorted by)."""
    best = max(rows, key=lambda r: r.get("macro_f1") or 0)
    best["verdict"] = "best"
    for row in rows:
        if row is best:
            continue
        result, why = test_against_best(runs[best["path"]], runs[row["path"]])
        if result is None:
            row["verdict"] = "not tested"
            say(f"{row['run']} vs {best['run']}: no paired test, {why}")
            continue
        f1 = result["macro_f1"]
        acc = result.get("accuracy") or result["micro_f1"]  # multi-label runs: micro-F1, paired bootstrap
        row.update(delta_macro_f1=f1["difference"], delta_macro_f1_lo=f1["interval"][0],
                   delta_macro_f1_hi=f1["interval"][1], p_macro_f1=f1["p_value"], p_macro_f1_text=f1["p_text"],
                   p_macro_f1_phrase=p_phrase(f1), delta_accuracy=acc["difference"], p_accuracy=acc["p_value"],
                   p_accuracy_text=acc["p_text"], p_accuracy_phrase=p_phrase(acc),
                   second_metric=acc["metric"].replace("_", "-"), second_test=acc["test"])
        worse = f1["significant"] and f1["difference"] < 0
        row["verdict"] = "worse" if worse else "tied with best"


def _cell(row: dict, key: str) -> str:
    v = row.get(key)
    if key in ("test_accuracy", "macro_f1", "delta_macro_f1"):
        return with_interval(v, [row[f"{key}_lo"], row[f"{key}_hi"]] if row.get(f"{key}_lo") is not None else None)
    if key.startswith("p_") and v is not None:
        return row.get(f"{key}_text") or f"{v:.3g}"
    if key == "delta_accuracy" and v is not None:
        return f"{v:+.4f}"
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def leaderboard_markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r, k) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def verdicts(rows: list[dict]) -> list[str]:
    """One sentence per tested run: does it differ from the best, and by how much."""
    best = next((r for r in rows if r.get("verdict") == "best"), rows[0])
    out = []
    for r in rows:
        if r.get("p_macro_f1") is None:
            continue
        how = ("significantly worse" if r["verdict"] == "worse" else "not significantly different (tied)")
        test = "McNemar" if r["second_test"] == "McNemar exact" else "paired bootstrap"
        out.append(f"{r['run']} vs {best['run']}: macro-F1 {r['delta_macro_f1']:+.4f} "
                   f"[{r['delta_macro_f1_lo']:+.4f}, {r['delta_macro_f1_hi']:+.4f}], paired bootstrap "
                   f"{r['p_macro_f1_phrase']}; {r['second_metric']} {r['delta_accuracy']:+.4f}, {test} "
                   f"{r['p_accuracy_phrase']}: {how}.")
    return out


def find_runs(runs: list[str], pattern: str | None) -> list[Path]:
    """Run directories named, and those a glob matches; a matched folder that is not a run is searched for
    runs nested in it (matrix cells, ``seed-<s>/`` folders)."""
    paths = []
    for r in runs:
        if Path(r).name.endswith(".partial"):
            raise EmolabError(f"{r} is an unfinished run (its folder still ends in .partial)",
                              hint="finish it with `emolab run CONFIG --resume`, or leave it out of the comparison")
    matched = [Path(p) for p in glob.glob(pattern or "") if not Path(p).name.endswith(".partial")]
    for p in [Path(r) for r in runs] + sorted(matched):
        if (p / runfiles.METRICS).is_file() or not p.is_dir():
            paths.append(p)
        else:
            paths += sorted(m.parent for m in p.rglob(runfiles.METRICS) if not m.parent.name.endswith(".partial"))
    if not paths:
        raise EmolabError("no runs to compare", hint="name run directories, or --glob 'runs/*'")
    return list(dict.fromkeys(paths))


def _display_names(runs: list[Run]) -> None:
    """Nested runs share names (``seed-1``): name them by their path below the common parent."""
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return
    paths = [r.path.resolve() for r in runs]
    common = Path(os.path.commonpath(paths))
    if common in paths:
        common = common.parent
    for r, p in zip(runs, paths):
        r.display_name = str(p.relative_to(common))


def leaderboards(runs: list[Path], *, sort_by: str = "macro_f1", say=print) -> list[list[dict]]:
    """Rows grouped by dataset and split, each group sorted best first and tested against its best."""
    opened = [open_run(r) for r in runs]
    _display_names(opened)
    by_path = {str(r.path): r for r in opened}
    groups: dict[tuple, list[dict]] = {}
    for r in opened:
        row = leaderboard_row(r)
        row["run"] = getattr(r, "display_name", r.name)
        groups.setdefault((row["dataset"], row["split"]), []).append(row)
    out = []
    ascending = lower_is_better(sort_by)
    for rows in groups.values():
        rows.sort(key=lambda r: (r.get(sort_by) is None, (r.get(sort_by) or 0) * (1 if ascending else -1)))
        _add_significance(rows, by_path, say)
        out.append(rows)
    return out


def compare(runs: list[Path], out: Path, *, sort_by: str = "macro_f1", say=print) -> list[dict]:
    """Write ``leaderboard.md``, ``leaderboard.csv``, a bar chart and overlaid learning curves into ``out``."""
    groups = leaderboards(runs, sort_by=sort_by, say=say)
    text = ["# Leaderboard", "",
            "One table per dataset and split. Intervals: 95% percentile bootstrap over the test examples. Each run is "
            "tested against the best of its table on the same examples (paired bootstrap on macro-F1, McNemar's "
            "exact test on accuracy); a run whose macro-F1 is not significantly lower (p ≥ 0.05) is tied with it. "
            "The tests are not corrected for multiple comparisons, and the best run is picked on the same test set, "
            "so its lead is, if anything, overstated: treat a borderline 'worse' in a large table with care.", ""]
    for rows in groups:
        text += [f"## {rows[0]['dataset']} ({rows[0]['split']})", "", leaderboard_markdown(rows)]
        text += [f"- {v}" for v in verdicts(rows)] + [""]
    atomic_write(out / "leaderboard.md", "\n".join(text))
    flat = [r for rows in groups for r in rows]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[k for k, _ in COLUMNS] + CSV_EXTRA, extrasaction="ignore")
    w.writeheader()
    w.writerows(flat)
    atomic_write(out / "leaderboard.csv", buf.getvalue())
    plots.leaderboard_bars(flat, out / "leaderboard.png")
    curves = {r["run"]: history(Path(r["path"])) for r in flat if len(history(Path(r["path"]))) > 1}
    if curves:
        plots.overlay_curves(curves, out / "curves.png")
    say(f"wrote {out / 'leaderboard.md'} (every column), leaderboard.csv and leaderboard.png")
    return flat


def terminal_text(rows: list[dict], width: int = 120) -> str:
    """:func:`terminal_tables` rendered as text (for callers that print through ``say``)."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None)
    for table, verdicts_ in terminal_tables(rows):
        console.print(table)
        for v in verdicts_:
            console.print(v, highlight=False, soft_wrap=True)
    return buf.getvalue().rstrip()


# what a terminal shows of a leaderboard: the columns that decide, the rest is in leaderboard.md
TERMINAL_COLUMNS = ("run", "model", "test_accuracy", "macro_f1", "delta_macro_f1", "p_macro_f1", "verdict",
                    "ms_per_example")


def terminal_tables(rows: list[dict]):
    """One Rich table per dataset and split, with :data:`TERMINAL_COLUMNS`, and each group's verdicts."""
    from rich.table import Table

    titles = dict(COLUMNS)
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["split"]), []).append(r)
    for (dataset, split), group in groups.items():
        table = Table(title=f"{dataset} ({split})", title_justify="left")
        for key in TERMINAL_COLUMNS:
            table.add_column(titles[key], justify="left" if key in ("run", "model", "verdict") else "right",
                             overflow="fold")
        for r in group:
            table.add_row(*(_cell(r, k) for k in TERMINAL_COLUMNS))
        out.append((table, verdicts(group)))
    return out
