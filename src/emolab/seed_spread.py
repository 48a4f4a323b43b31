"""Seed spread: a config run once per seed (``emolab run CONFIG --seeds 3`` or ``seeds: [1, 2, 3]``) into
``runs/<name>/seed-<s>/``, then a summary of what changes with the seed alone: per-seed metrics, mean and
standard deviation, a spread plot and a leaderboard that tests every seed against the best."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from emolab import plots, runfiles
from emolab.config import RunConfig
from emolab.errors import EmolabError
from emolab.rundir import atomic_write, open_run, to_json
from emolab.significance import with_interval

HEADLINE = ("accuracy", "macro_f1", "weighted_f1", "micro_f1")


def seed_configs(cfg: RunConfig) -> tuple[Path, list[RunConfig]]:
    """The folder of the seed runs and one config per seed (``seeds`` cleared, ``output`` pointing inside)."""
    folder = Path(cfg.output.dir) / (cfg.output.name or "run")
    out = []
    for seed in cfg.seeds:
        one = copy.deepcopy(cfg)
        one.seed, one.seeds = seed, []
        one.output.dir, one.output.name = str(folder), f"seed-{seed}"
        out.append(one)
    return folder, out


def run_unless_finished(cfg: RunConfig, title: str, *, overwrite: bool, resume: bool, say=print) -> Path:
    """One run of a set (a seed, a matrix cell): kept if it finished earlier (unless ``overwrite``), continued
    from its checkpoint with ``resume`` if it was interrupted, started otherwise."""
    from emolab.pipeline import run

    final = Path(cfg.output.dir) / cfg.output.name
    if not overwrite and (final / runfiles.METRICS).is_file():
        say(f"{title}: finished earlier, kept ({final})")
        return final
    say(title)
    partial = final.with_name(final.name + ".partial")
    return run(cfg, overwrite=overwrite, resume=resume and partial.is_dir(), say=say)


def run_seeds(cfg: RunConfig, *, overwrite: bool = False, resume: bool = False, say=print) -> list[Path]:
    """Each seed's run in turn; run again after an interruption, finished seeds are kept and (with
    ``resume``) the interrupted one continues from its checkpoint."""
    from emolab.compare import compare

    folder, configs = seed_configs(cfg)
    if (folder / runfiles.METRICS).is_file():
        raise EmolabError(f"{folder} is a finished single run; seed runs would be written inside it",
                          hint=f"name the seed runs' folder: --set output.name={folder.name}-seeds")
    say(f"seeds {', '.join(map(str, cfg.seeds))}: {len(configs)} runs into {folder}")
    done = []
    for i, one in enumerate(configs, start=1):
        done.append(run_unless_finished(one, f"[{i}/{len(configs)}] seed {one.seed}", overwrite=overwrite,
                                        resume=resume, say=say))
    compare(done, folder / "leaderboard", say=lambda _m: None)
    summarize(folder, done, say=say)
    return done


def _mean_sd(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max())}


def summarize(folder: Path, runs: list[Path], *, split: str = "test", say=print) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.md`` and ``seed_spread.png`` into ``folder``."""
    from emolab.compare import leaderboards, verdicts

    opened = [open_run(r) for r in runs]
    per_seed = []
    for r in opened:
        m = r.metrics.get(split, {})
        per_seed.append({"seed": r.raw_config.get("seed"), "run": r.name,
                         **{k: m[k] for k in HEADLINE if k in m},
                         "intervals": {k: v for k, v in m.get("intervals", {}).items() if k in HEADLINE},
                         "per_class_f1": {c: v["f1"] for c, v in m.get("per_class", {}).items()},
                         "train_s": r.manifest.get("wall_times", {}).get("train_s")})
    metrics = [k for k in HEADLINE if all(k in p for p in per_seed)]
    spread = {k: _mean_sd([p[k] for p in per_seed]) for k in metrics}
    classes = list(per_seed[0]["per_class_f1"]) if per_seed else []
    per_class = {c: _mean_sd([p["per_class_f1"][c] for p in per_seed]) for c in classes}
    data = opened[0].raw_config.get("data", {}) if opened else {}
    varies = ["initialisation", "data order", "dropout"]
    if data.get("max_train_examples"):
        varies.append(f"the {data['max_train_examples']:,}-example training subsample")
    summary = {"split": split, "seeds": [p["seed"] for p in per_seed], "per_seed": per_seed, "mean_sd": spread,
               "per_class_f1": per_class, "seed_varies": varies}
    atomic_write(folder / "summary.json", to_json(summary) + "\n")
    plots.seed_spread({k: [p[k] for p in per_seed] for k in metrics}, summary["seeds"], folder / "seed_spread.png")
    untested: list[str] = []
    groups = leaderboards(runs, say=untested.append)
    atomic_write(folder / "summary.md", summary_markdown(folder.name, summary, [v for g in groups for v in verdicts(g)],
                                                         untested))
    head = ", ".join(f"{k} {v['mean']:.4f} ± {v['sd']:.4f}" for k, v in spread.items())
    say(f"{split} over seeds {', '.join(map(str, summary['seeds']))}: {head}")
    say(f"wrote {folder / 'summary.md'}")
    return summary


def summary_markdown(name: str, s: dict[str, Any], verdicts: list[str], untested: list[str] = ()) -> str:
    seeds = ", ".join(map(str, s["seeds"]))
    lines = [f"# Seed spread: {name}", "",
             f"The same config trained with seeds {seeds}; only the seed differs, and with it "
             f"{', '.join(s['seed_varies'])}. Headline on the {s['split']} split: mean ± standard deviation over the "
             f"{len(s['seeds'])} seeds.", ""]
    lines += [f"- **{k}: {v['mean']:.4f} ± {v['sd']:.4f}** (min {v['min']:.4f}, max {v['max']:.4f})"
              for k, v in s["mean_sd"].items()]
    keys = list(s["mean_sd"])
    lines += ["", "## Per seed (95% bootstrap intervals over the test examples)", "",
              "| seed | run | " + " | ".join(keys) + " | train s |", "|---|---|" + "---|" * (len(keys) + 1)]
    for p in s["per_seed"]:
        cells = [with_interval(p[k], p["intervals"].get(k)) for k in keys]
        cells.append("–" if p["train_s"] is None else f"{p['train_s']:.0f}")
        lines.append(f"| {p['seed']} | {p['run']} | " + " | ".join(cells) + " |")
    lines += ["", "The spread across seeds and the interval of one run measure different things: the interval is "
                  "the test set's sampling noise for one model; the standard deviation is how much training itself "
                  "varies. Report both before calling a difference between configs real.", ""]
    if verdicts:
        lines += ["## Do the seeds differ?", "", "Each seed against the best one on the same test examples:", ""]
        lines += [f"- {v}" for v in verdicts] + [""]
    if untested:
        lines += ["## Not tested against each other", "",
                  "These seeds could not be paired with the best one; where the reason is different test examples (a "
                  "test split drawn with the seed, as for a CSV without a test file), the spread above includes the "
                  "choice of test set:", ""]
        lines += [f"- {m}" for m in untested] + [""]
    lines += ["## Per-class F1", "", "| class | mean ± sd | min | max |", "|---|---|---|---|"]
    lines += [f"| {c} | {v['mean']:.4f} ± {v['sd']:.4f} | {v['min']:.4f} | {v['max']:.4f} |"
              for c, v in s["per_class_f1"].items()]
    lines += ["", "![Per-seed metrics](seed_spread.png)", "",
              "Each seed's own report is in its folder (`seed-<s>/report.html`); all runs side by side: "
              "`leaderboard/leaderboard.md`.", ""]
    return "\n".join(lines)
