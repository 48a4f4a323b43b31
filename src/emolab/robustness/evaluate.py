"""``emolab robustness RUN``: a run's test split under every perturbation of a suite, scored against the
clean split on the same examples (paired bootstrap on macro-F1, McNemar on accuracy), with flip rates, the
most confident flips, and, against a ``--baseline`` run, the mean corruption error (ImageNet-C's mCE).
Writes ``RUN/robustness/``: ``robustness.json``, ``robustness.md`` and the predictions (``predictions.npz``)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emolab import runfiles
from emolab.errors import EmolabError, unknown_name
from emolab.outputs import atomic_write
from emolab.robustness.image import CORRUPTIONS, corrupt
from emolab.robustness.text import PERTURBATIONS, perturb
from emolab.rundir import open_run, to_json
from emolab.significance import intervals, paired_comparison, single_label_stats, with_interval

SUITES = {"text": PERTURBATIONS, "image": CORRUPTIONS}
DEFAULT_SEVERITIES = {"text": (3,), "image": (1, 2, 3, 4, 5)}
EXAMPLES = 5  # the most confident flips listed per check
Say = Callable[[str], None]


@dataclass
class CheckResult:
    """One perturbation at one severity on the same examples as the clean split."""
    name: str
    kind: str
    severity: int | None  # None: severity does not change this perturbation
    description: str
    n: int
    changed: int  # inputs the perturbation altered
    accuracy: float
    accuracy_interval: list[float]
    macro_f1: float
    macro_f1_interval: list[float]
    vs_clean: dict[str, dict]  # accuracy (McNemar) and macro_f1 (paired bootstrap): perturbed - clean
    flip_rate: float  # share of all predictions that changed
    flip_rate_changed: float  # share of the altered inputs whose prediction changed
    seconds: float
    examples: list[dict] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.name if self.severity is None else f"{self.name}@{self.severity}"


@dataclass
class RobustnessReport:
    run: str
    suite: str
    split: str
    n: int
    seed: int
    severities: list[int]
    clean: dict[str, Any]
    checks: list[CheckResult]
    seconds: float
    baseline: dict[str, Any] | None = None  # mean corruption error against a baseline run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- checking the request ---------------------------------------------------------------------------------


def check_request(suite: str, severities: list[int], only: list[str]) -> None:
    """Every user error at once: an unknown suite or perturbation, a severity outside 1..5."""
    if suite not in SUITES:
        raise unknown_name("suite", suite, list(SUITES))
    bad = [s for s in severities if not 1 <= int(s) <= 5]
    if bad:
        raise EmolabError(f"--severity {bad[0]} is outside 1..5", hint="give a severity from 1 (mild) to 5 (harsh)")
    for name in only:
        if name not in SUITES[suite]:
            raise unknown_name(f"{suite} perturbation", name, list(SUITES[suite]))


def _run_suite(run, suite: str | None, what: str) -> str:
    modality = run.card.modality
    if run.card.labels.multi_label:
        raise EmolabError(f"{run.path} is a multi-label run; robustness scores single-label runs",
                          hint="give a single-label run (emotion, sst2, fer2013, ...)")
    if suite is None:
        return modality
    if suite not in SUITES:
        raise unknown_name("suite", suite, list(SUITES))
    if suite != modality:
        raise EmolabError(f"--suite {suite} does not fit {what} {run.path}: it holds a {modality} model "
                          f"({run.card.summary})", hint=f"use --suite {modality}, or leave --suite out")
    return suite


# --- scoring -----------------------------------------------------------------------------------------------


def _apply(suite: str, name: str, inputs: Any, severity: int, seed: int) -> Any:
    return perturb(name, inputs, severity=severity, seed=seed) if suite == "text" else corrupt(
        name, inputs, severity=severity, seed=seed)


def _changed(suite: str, before: Any, after: Any) -> np.ndarray:
    if suite == "text":
        return np.array([a != b for a, b in zip(before, after)], dtype=bool)
    return (np.asarray(before) != np.asarray(after)).reshape(len(before), -1).any(axis=1)


def _flips(suite, ids, inputs, perturbed, y_true, clean_probs, probs, names) -> list[dict]:
    """The most confident flips: examples whose prediction changed, by the perturbed prediction's confidence."""
    clean, pred = clean_probs.argmax(1), probs.argmax(1)
    where = np.flatnonzero(clean != pred)
    where = where[np.argsort(-probs[where, pred[where]], kind="stable")][:EXAMPLES]
    out = []
    for i in where:
        row = {"id": str(ids[i]), "index": int(i), "true": names[y_true[i]], "before": names[clean[i]],
               "after": names[pred[i]], "confidence": round(float(probs[i, pred[i]]), 4)}
        if suite == "text":
            row.update(text=inputs[i], perturbed=perturbed[i])
        out.append(row)
    return out


def score_check(name, kind, severity, description, *, suite, ids, inputs, perturbed, y_true, clean_probs, probs,
                names, resamples, seed, seconds) -> CheckResult:
    clean_pred, pred = clean_probs.argmax(1), probs.argmax(1)
    ci = intervals(y_true, pred, names, resamples=resamples, seed=seed) if resamples else {}
    paired = paired_comparison(y_true, pred, clean_pred, names, resamples=resamples or 1000, seed=seed)
    changed = _changed(suite, inputs, perturbed)
    flipped = pred != clean_pred
    stats = single_label_stats(np.ones((1, len(y_true))), y_true, pred, len(names))
    return CheckResult(
        name=name, kind=kind, severity=severity, description=description, n=len(y_true), changed=int(changed.sum()),
        accuracy=float(stats["accuracy"][0]), accuracy_interval=ci.get("accuracy", []),
        macro_f1=float(stats["macro_f1"][0]), macro_f1_interval=ci.get("macro_f1", []),
        vs_clean={m: paired[m].to_dict() for m in ("accuracy", "macro_f1")},
        flip_rate=float(flipped.mean()),
        flip_rate_changed=float(flipped[changed].mean()) if changed.any() else 0.0,
        seconds=round(seconds, 3),
        examples=_flips(suite, ids, inputs, perturbed, y_true, clean_probs, probs, names))


def _plan(suite: str, severities: list[int], only: list[str]) -> list[tuple[str, int | None]]:
    out = []
    for name, p in SUITES[suite].items():
        if only and name not in only:
            continue
        out += [(name, s) for s in severities] if p.graded else [(name, None)]
    return out


def _predict_changed(model, suite: str, inputs: Any, perturbed: Any, clean_probs: np.ndarray, bs: int) -> np.ndarray:
    """The model's probabilities on ``perturbed``, predicting only the inputs the perturbation altered as the
    model reads them (an unaltered input keeps its clean prediction: a perturbation that touches few texts
    costs little, and uppercasing costs nothing to an uncased tokenizer)."""
    where = np.flatnonzero(_changed(suite, inputs, perturbed))
    if suite == "text" and len(where):
        before, after = model.as_read([inputs[i] for i in where]), model.as_read([perturbed[i] for i in where])
        where = where[[a != b for a, b in zip(before, after)]]
    probs = clean_probs.copy()
    if len(where):
        some = [perturbed[i] for i in where] if suite == "text" else np.asarray(perturbed)[where]
        probs[where] = model.predict_proba(some, batch_size=bs)
    return probs


def _predictor(run):
    model = run.model()
    model.set_inference(run.config.eval)
    return model


def mean_corruption_error(checks: list[CheckResult], base: dict[str, float], clean_error: float,
                          base_clean_error: float) -> dict[str, Any]:
    """ImageNet-C's corruption error per perturbation (the model's errors summed over severities over the
    baseline's) and its mean (mCE), and the relative version that first subtracts each model's clean error."""
    per: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(c.name for c in checks):
        mine = [c for c in checks if c.name == name]
        err = sum(1 - c.accuracy for c in mine)
        b = sum(base[c.key] for c in mine)
        rel_b = b - len(mine) * base_clean_error
        per[name] = {"ce": err / b if b else float("nan"),
                     "relative_ce": (err - len(mine) * clean_error) / rel_b if rel_b > 0 else float("nan")}
    relative = [v["relative_ce"] for v in per.values() if not np.isnan(v["relative_ce"])]
    return {"per_perturbation": per, "mce": float(np.mean([v["ce"] for v in per.values()])),
            "relative_mce": float(np.mean(relative)) if relative else float("nan")}


def robustness_run(run_path: str | Path, *, suite: str | None = None, severities: list[int] | None = None,
                   split: str = "test", max_examples: int | None = None, only: list[str] | None = None,
                   baseline: str | Path | None = None, seed: int | None = None, say: Say = print
                   ) -> RobustnessReport:
    """Score ``run_path``'s ``split`` under every perturbation of ``suite`` (the run's modality by default)
    and write ``RUN/robustness/``."""
    from emolab.data import load_dataset

    t0 = time.perf_counter()
    run = open_run(run_path)
    suite = _run_suite(run, suite, "the run")
    severities = sorted(set(severities or DEFAULT_SEVERITIES[suite]))
    only = list(only or [])
    check_request(suite, severities, only)
    if max_examples is not None and max_examples < 2:
        raise EmolabError(f"--max-examples {max_examples} is too few", hint="give 2 or more, e.g. --max-examples 1000")
    base_run = open_run(baseline) if baseline is not None else None
    if base_run is not None:
        _run_suite(base_run, suite, "the baseline")
        if base_run.card.labels.names != run.card.labels.names:
            raise EmolabError(f"the baseline {base_run.path} predicts other labels than {run.path}",
                              hint="give a baseline run trained on the same dataset")
    cfg = run.config
    seed = cfg.seed if seed is None else seed
    resamples = cfg.eval.bootstrap
    ds = load_dataset(cfg.data, cfg.seed)
    if split not in ds.splits:
        raise EmolabError(f"{run.path}'s dataset has no split {split!r}",
                          hint=f"choose one of: {', '.join(ds.splits)}")
    data = ds.split(split)
    if max_examples is not None and max_examples < len(data):
        data = data.subset(np.sort(np.random.default_rng(seed).choice(len(data), max_examples, replace=False)))
    names = list(run.card.labels.names)
    y_true = np.asarray(data.labels)
    model = _predictor(run)
    bs = cfg.eval.batch_size
    clean_probs = model.predict_proba(data.inputs, batch_size=bs)
    clean_pred = clean_probs.argmax(1)
    ci = intervals(y_true, clean_pred, names, resamples=resamples, seed=seed) if resamples else {}
    clean = {"accuracy": float((clean_pred == y_true).mean()), "accuracy_interval": ci.get("accuracy", []),
             "macro_f1": _macro_f1(y_true, clean_pred, len(names)),
             "macro_f1_interval": ci.get("macro_f1", [])}
    say(f"{run.name}: {suite} suite on {split} ({len(y_true)} examples), clean accuracy {clean['accuracy']:.4f}")
    checks: list[CheckResult] = []
    saved: dict[str, np.ndarray] = {}
    base_model = _predictor(base_run) if base_run is not None else None
    base_errors: dict[str, float] = {}
    base_clean_probs = base_model.predict_proba(data.inputs, batch_size=bs) if base_model is not None else None
    registry = SUITES[suite]
    for name, severity in _plan(suite, severities, only):
        t1 = time.perf_counter()
        perturbed = _apply(suite, name, data.inputs, severity or 3, seed)
        probs = _predict_changed(model, suite, data.inputs, perturbed, clean_probs, bs)
        check = score_check(name, registry[name].kind, severity, registry[name].description, suite=suite,
                            ids=data.ids, inputs=data.inputs, perturbed=perturbed, y_true=y_true,
                            clean_probs=clean_probs, probs=probs, names=names, resamples=resamples, seed=seed,
                            seconds=time.perf_counter() - t1)
        checks.append(check)
        saved[check.key] = probs.argmax(1)
        if base_model is not None:
            base_probs = _predict_changed(base_model, suite, data.inputs, perturbed, base_clean_probs, bs)
            base_errors[check.key] = float((base_probs.argmax(1) != y_true).mean())
        say(f"  {check.key}: accuracy {check.accuracy:.4f} ({check.vs_clean['accuracy']['difference']:+.4f}), "
            f"flip rate {check.flip_rate:.4f}")
    base = None
    if base_model is not None:
        base_clean = float((base_clean_probs.argmax(1) != y_true).mean())
        graded = [c for c in checks if c.kind in ("perturbation", "corruption")]
        base = {"run": base_run.name, "clean_error": base_clean,
                **mean_corruption_error(graded, base_errors, 1 - clean["accuracy"], base_clean)}
    report = RobustnessReport(run=run.name, suite=suite, split=split, n=len(y_true), seed=seed,
                              severities=severities, clean=clean, checks=checks,
                              seconds=round(time.perf_counter() - t0, 2), baseline=base)
    write_report(run.path / runfiles.ROBUSTNESS, report, ids=data.ids, y_true=y_true, clean_pred=clean_pred, preds=saved)
    say(f"wrote {run.path / runfiles.ROBUSTNESS} ({report.seconds:.1f} s)")
    return report


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    return float(single_label_stats(np.ones((1, len(y_true))), y_true, y_pred, k)["macro_f1"][0])


def write_report(folder: Path, report: RobustnessReport, *, ids, y_true, clean_pred, preds: dict) -> None:
    import io

    atomic_write(folder / runfiles.name_in_folder(runfiles.ROBUSTNESS_JSON), to_json(report.to_dict()) + "\n")
    atomic_write(folder / "robustness.md", robustness_markdown(report))
    buf = io.BytesIO()
    np.savez_compressed(buf, ids=np.asarray(ids).astype(str), y_true=y_true, clean=clean_pred, **preds)
    atomic_write(folder / "predictions.npz", buf.getvalue())


# --- rendering ---------------------------------------------------------------------------------------------

TABLE_HEADER = ["check", "kind", "sev.", "changed", "accuracy [95% CI]", "Δ acc (McNemar p)",
                "macro-F1 [95% CI]", "Δ macro-F1 (p)", "flip rate"]


def _p(d: dict) -> str:
    return f"{d['difference']:+.4f} ({d['p_text']})"


def table_rows(report: RobustnessReport | dict) -> list[list[str]]:
    """One row per check, the clean split first: what the CLI prints and ``robustness.md`` holds (from a
    report, or the ``robustness.json`` it wrote)."""
    d = report.to_dict() if isinstance(report, RobustnessReport) else report
    c = d["clean"]
    rows = [["clean", "", "", "0", with_interval(c["accuracy"], c["accuracy_interval"]), "",
             with_interval(c["macro_f1"], c["macro_f1_interval"]), "", ""]]
    for ch in d["checks"]:
        rows.append([ch["name"], ch["kind"], "–" if ch["severity"] is None else str(ch["severity"]),
                     f"{ch['changed']}/{ch['n']}", with_interval(ch["accuracy"], ch["accuracy_interval"]),
                     _p(ch["vs_clean"]["accuracy"]), with_interval(ch["macro_f1"], ch["macro_f1_interval"]),
                     _p(ch["vs_clean"]["macro_f1"]), f"{ch['flip_rate']:.4f}"])
    return rows


def table_markdown(report: RobustnessReport | dict) -> str:
    """The table alone, for the run's report."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|---" * len(TABLE_HEADER) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table_rows(report)])


def robustness_markdown(report: RobustnessReport) -> str:
    lines = [f"# Robustness of {report.run} ({report.suite} suite)", "",
             f"{report.split} split, {report.n} examples, seed {report.seed}, severities "
             f"{', '.join(map(str, report.severities))}; {report.seconds:.1f} s.", "",
             "Δ is perturbed minus clean on the same examples: accuracy's p-value is McNemar's exact test, "
             "macro-F1's a paired bootstrap. The flip rate is the share of predictions that changed. "
             "Invariance checks should flip nothing; a directional check (negate) should flip what it changed.", "",
             table_markdown(report)]
    checks = [c for c in report.checks if c.kind in ("invariance", "directional")]
    if checks:
        lines += ["", "## Invariance and directional checks", "",
                  "| check | kind | changed inputs | predictions changed among them | verdict |", "|---|---|---|---|---|"]
        for c in checks:
            verdict = "fails when it flips" if c.kind == "invariance" else "passes when it flips"
            lines.append(f"| {c.name} | {c.kind} | {c.changed} | {c.flip_rate_changed:.4f} | {verdict} |")
    if report.baseline:
        b = report.baseline
        lines += ["", f"## Corruption error relative to {b['run']}", "",
                  f"mCE {b['mce']:.3f}, relative mCE {b['relative_mce']:.3f} (1.0: as robust as the baseline; "
                  f"baseline clean error {b['clean_error']:.4f}).", "", "| perturbation | CE | relative CE |",
                  "|---|---|---|"]
        lines += [f"| {k} | {v['ce']:.3f} | {v['relative_ce']:.3f} |" for k, v in b["per_perturbation"].items()]
    lines += ["", "## The most confident flips", ""]
    for c in report.checks:
        if not c.examples:
            continue
        lines += [f"### {c.key}", ""]
        for e in c.examples:
            head = f"- `{e['id']}` (true {e['true']}): {e['before']} -> {e['after']} ({e['confidence']:.2f})"
            if "text" in e:
                head += f": “{_md(e['text'])}” -> “{_md(e['perturbed'])}”"
            else:
                head += f", test index {e['index']}"
            lines.append(head)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
