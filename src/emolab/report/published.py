"""The run against published scores, computed: each published figure on the run's own test split and
averaging is ahead of, level with (inside the run's 95% interval) or behind the run; figures on another split
or averaging are listed and not compared; where the run is behind, the reasons come from the run."""

from __future__ import annotations

from typing import Any

from emolab.data import dataset_spec
from emolab.records import ModelCard
from emolab.report.references import PUBLISHED_PARAMETERS

METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "micro_f1": "micro-F1", "weighted_f1": "weighted-F1"}


def _comparable(row_split: str, metric: str, ours: str, multi_label: bool) -> str | None:
    """None when the published row is on the run's split (``ours``, as published tables call it) and
    averaging, else why not."""
    parts = [p.strip() for p in row_split.split(",")]
    if parts[0] != ours:
        return f"published on {parts[0]}, this run's test split is {ours}"
    if ("multi-label" in parts) != multi_label:
        return ("published multi-label, this run is single-label" if multi_label is False
                else "published single-label, this run is multi-label")
    if metric == "macro_f1" and len(parts) > 1 and "macro" not in parts:
        return f"published with {parts[1]} averaging, this run's F1 is macro"
    return None


def _names(rows: list[dict]) -> str:
    items = [f"{r['model']} ({r['published']:.4g})" for r in rows]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _reasons(cfg: dict, card: ModelCard, metrics: dict, behind: list[dict], stats: dict | None,
             gpu: str | None) -> list[str]:
    """What in this run differs from the published models it is behind."""
    out = []
    params = metrics.get("parameters")
    bigger = [(r["model"], PUBLISHED_PARAMETERS[r["model"]]) for r in behind
              if r["model"] in PUBLISHED_PARAMETERS and params and PUBLISHED_PARAMETERS[r["model"]] > 1.5 * params]
    if bigger:
        sizes = ", ".join(f"{m} {p / 1e6:.0f}M" for m, p in dict(bigger).items())
        out.append(f"a smaller network ({params / 1e6:.1f}M parameters against {sizes})")
    full = (stats or {}).get("full_train_size")
    used = (stats or {}).get("splits", {}).get("train", {}).get("n")
    limit = cfg["data"].get("max_train_examples")
    if limit and used:
        out.append(f"a training subset ({used:,} examples, `data.max_train_examples: {limit}`)"
                   + (f" of {full:,}" if full else ""))
    if card.training == "loop":
        epochs = cfg["train"]["epochs"]
        if epochs <= 5 or card.image:
            out.append(f"{epochs} epoch(s) " + (f"on one {gpu}" if gpu else "on a CPU budget"))
    elif card.training == "one-pass":
        out.append(f"a classical model ({card.summary}) rather than a fine-tuned network")
    else:
        out.append(f"a model used as shipped ({card.summary}), not trained by this run")
    if card.image and any("ensemble" in r["source"].lower() or "VGG" in r["model"] for r in behind):
        out.append("the published results train deeper CNNs for far longer")
    return out


def compare_published(cfg: dict, card: ModelCard, metrics: dict, stats: dict | None = None,
                      gpu: str | None = None) -> tuple[list[dict[str, Any]], str, float | None]:
    """(table rows, the paragraph, gap to the best published figure the run is behind or None)."""
    spec = dataset_spec(cfg["data"].get("name", ""))
    test = metrics.get("test", {})
    multi = card.labels.multi_label
    rows, gap = [], None
    for score in spec.published_scores(cfg["data"]):
        model, metric, value, split, source = score.model, score.metric, score.value, score.split, score.source
        ours = test.get(metric)
        interval = test.get("intervals", {}).get(metric)
        why_not = _comparable(split, metric, spec.published_test_split, multi)
        verdict = None
        if ours is not None and why_not is None:
            if interval:
                verdict = "ahead" if value < interval[0] else "behind" if value > interval[1] else "level"
            else:
                verdict = "ahead" if ours > value else "behind" if ours < value else "level"
            if verdict == "behind":
                gap = ours - value if gap is None else min(gap, ours - value)
        rows.append({"model": model, "metric": metric, "published": value, "split": split, "source": source,
                     "ours": ours, "interval": interval, "delta": None if ours is None else ours - value,
                     "verdict": verdict or ("not compared: " + (why_not or f"this run has no {metric}"))})
    if not rows:
        return rows, "", None
    sentences = []
    n = test.get("n")
    for metric in dict.fromkeys(r["metric"] for r in rows):
        mine = [r for r in rows if r["metric"] == metric and r["verdict"] in ("ahead", "level", "behind")]
        if not mine:
            continue
        ours, interval = mine[0]["ours"], mine[0]["interval"]
        head = f"{METRIC_NAMES.get(metric, metric)} {ours:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")
        parts = []
        for verdict, words in (("level", "level with"), ("ahead", "ahead of"), ("behind", "behind")):
            group = [r for r in mine if r["verdict"] == verdict]
            if group:
                parts.append(f"{words} {_names(group)}")
        sentences.append(f"On {spec.published_test_split} (n = {n}), this run's {head} is "
                         + "; ".join(parts) + ".")
    if any(r["verdict"] == "level" for r in rows):
        sentences.append("Level means the published figure lies inside the run's 95% interval: the difference is "
                         "within what resampling the test set moves, so it is no evidence either way.")
    skipped = [r for r in rows if r["verdict"].startswith("not compared")]
    for r in skipped:
        sentences.append(f"{r['model']} ({r['metric']}) is not compared: {r['verdict'].split(': ', 1)[1]}.")
    behind = [r for r in rows if r["verdict"] == "behind"]
    if behind:
        reasons = _reasons(cfg, card, metrics, behind, stats, gpu)
        if reasons:
            sentences.append("Where the run is behind, it differs from those models in " + "; ".join(reasons) + ".")
    if spec.published_note:
        sentences.append(spec.published_note)
    return rows, " ".join(sentences), gap
