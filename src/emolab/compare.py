"""``emolab compare``: one leaderboard over finished runs (Markdown, CSV, bar chart, overlaid curves)."""

from __future__ import annotations

import csv
import glob
import io
from pathlib import Path
from typing import Any

from emolab import plots
from emolab.errors import EmolabError
from emolab.rundir import Run, atomic_write, open_run

COLUMNS = [("run", "run"), ("model", "model"), ("pooling", "pooling"), ("scheduler", "schedule"),
           ("parameters", "params"), ("val_loss", "val loss"), ("train_loss", "train loss"),
           ("val_accuracy", "val acc"), ("test_accuracy", "test acc"), ("macro_f1", "test macro-F1"),
           ("train_s", "train s"), ("ms_per_example", "ms/example")]


def history(run: Path) -> list[dict]:
    return open_run(run).history


def leaderboard_row(run: Path | Run) -> dict[str, Any]:
    """One run's line: model (as its card summarises it), pooling, size, losses, accuracies, macro-F1, train
    time, latency."""
    run = run if isinstance(run, Run) else open_run(run)
    card, metrics, manifest, hist = run.card, run.metrics, run.manifest, run.history
    best = max(hist, key=lambda h: h.get("val_macro_f1", 0)) if hist else {}
    return {"run": run.name,
            "model": card.hyperparameters.get("backbone") or card.model,  # the card's summary is in the report
            "pooling": card.hyperparameters.get("pooling", "-"),
            "scheduler": run.raw_config.get("train", {}).get("scheduler") if card.training == "loop" else "-",
            "parameters": metrics.get("parameters"),
            "val_loss": metrics.get("validation", {}).get("cross_entropy"), "train_loss": best.get("train_loss"),
            "val_accuracy": metrics.get("validation", {}).get("accuracy"),
            "test_accuracy": metrics.get("test", {}).get("accuracy"),
            "macro_f1": metrics.get("test", {}).get("macro_f1"),
            "train_s": manifest.get("wall_times", {}).get("train_s"),
            "ms_per_example": metrics.get("timing", {}).get("batch_1_p50_ms")}


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def leaderboard_markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def find_runs(runs: list[str], pattern: str | None) -> list[Path]:
    paths = [Path(r) for r in runs]
    if pattern:
        paths += sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "metrics.json").is_file())
    if not paths:
        raise EmolabError("no runs to compare", hint="name run directories, or --glob 'runs/*'")
    return list(dict.fromkeys(paths))


def compare(runs: list[Path], out: Path, *, sort_by: str = "macro_f1", say=print) -> list[dict]:
    """Write ``leaderboard.md``, ``leaderboard.csv``, a bar chart and overlaid learning curves into ``out``."""
    rows = sorted((leaderboard_row(r) for r in runs), key=lambda r: -(r.get(sort_by) or 0))
    atomic_write(out / "leaderboard.md", "# Leaderboard\n\n" + leaderboard_markdown(rows))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[k for k, _ in COLUMNS])
    w.writeheader()
    w.writerows({k: r.get(k) for k, _ in COLUMNS} for r in rows)
    atomic_write(out / "leaderboard.csv", buf.getvalue())
    plots.leaderboard_bars(rows, out / "leaderboard.png")
    curves = {r.name: history(r) for r in runs if len(history(r)) > 1}
    if curves:
        plots.overlay_curves(curves, out / "curves.png")
    say(leaderboard_markdown(rows))
    say(f"wrote {out / 'leaderboard.md'}, leaderboard.csv and leaderboard.png")
    return rows
