"""``emolab evaluate RUN --data OTHER``: a finished run scored on a corpus it was not trained on.

A label map sends the run's labels onto the other dataset's labels (several run labels may share a target).
The model's probabilities are summed over the run labels that share a target; the probability on run labels
without a target is dropped and each row renormalised over the mapped labels, so the model decides among the
labels it can express. Examples whose true label has no counterpart in the run (and, for multi-label data,
examples with several labels) are left out and counted. The same map applied to the run's own test
predictions gives an in-domain figure on the same classes. Writes ``RUN/evaluations/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from emolab.errors import ConfigError, EmolabError, did_you_mean
from emolab.outputs import atomic_write, check_name
from emolab.records import LabelSet, Predictions
from emolab.significance import with_interval

Say = Callable[[str], None]

# Word forms of one emotion that datasets spell differently (FER2013 "happy", FER+ "happiness"): the default
# map treats them as the same name. Different words (joy, happiness) are not merged: give a --label-map.
WORD_FORMS = {"happiness": "happy", "sadness": "sad", "anger": "angry", "surprised": "surprise",
              "disgusted": "disgust", "fearful": "fear"}
HEADLINE = ("accuracy", "macro_f1", "weighted_f1", "ece")


# --- the label map ------------------------------------------------------------------------------------------


def _same_name(name: str) -> str:
    key = name.strip().lower()
    return WORD_FORMS.get(key, key)


def default_label_map(run_labels, target_labels) -> dict[str, str]:
    """Run label -> target label where the names agree (case aside, and the word forms in ``WORD_FORMS``)."""
    targets = {_same_name(t): t for t in target_labels}
    return {r: targets[_same_name(r)] for r in run_labels if _same_name(r) in targets}


def read_label_map(spec: str) -> dict[str, str | None]:
    """``--label-map``: a YAML / JSON file mapping run labels to dataset labels (``null``: drop the label), or
    inline ``joy:positive,love:positive,sadness:negative`` (``surprise:`` drops one)."""
    from emolab.config import read_yaml

    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        raw = read_yaml(path)
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(str(path), ["expected a mapping of run labels to dataset labels, e.g. "
                                          "'joy: positive' on each line"])
        bad = [f"{k!r}: {v!r}" for k, v in raw.items() if not isinstance(k, str) or not (v is None or isinstance(v, str))]
        if bad:
            raise ConfigError(str(path), [f"{b}: each entry is a run label and one dataset label (or null to drop)"
                                          for b in bad])
        return dict(raw)
    mapping: dict[str, str | None] = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        if ":" not in item:
            raise EmolabError(f"--label-map: {item!r} is not run_label:dataset_label",
                              hint="write e.g. --label-map joy:positive,love:positive,sadness:negative, or give a "
                                   "YAML / JSON file")
        key, value = (x.strip() for x in item.split(":", 1))
        if key in mapping:
            raise EmolabError(f"--label-map: {key!r} is mapped twice", hint="map each run label once")
        mapping[key] = value or None
    if not mapping:
        raise EmolabError("--label-map is empty", hint="write e.g. --label-map joy:positive,sadness:negative")
    return mapping


@dataclass(frozen=True)
class LabelMapping:
    """Run labels onto a dataset's labels. ``pairs``: run label -> dataset label, for the mapped ones only."""

    run_labels: tuple[str, ...]
    target_labels: tuple[str, ...]
    pairs: dict[str, str]

    @property
    def scored(self) -> tuple[str, ...]:
        """The dataset's labels that some run label maps to, in the dataset's order: the classes scored."""
        return tuple(t for t in self.target_labels if t in self.pairs.values())

    @property
    def dropped(self) -> tuple[str, ...]:
        """Run labels without a target: their probability is dropped and the rest renormalised."""
        return tuple(r for r in self.run_labels if r not in self.pairs)

    def matrix(self) -> np.ndarray:
        """``(K_run, K_scored)`` 0/1: row r has a 1 in the column of its target."""
        m = np.zeros((len(self.run_labels), len(self.scored)))
        for r, t in self.pairs.items():
            m[self.run_labels.index(r), self.scored.index(t)] = 1.0
        return m

    def probs(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's ``(N, K_run)`` probabilities summed onto the scored labels and renormalised; also the
        probability each row had on dropped labels. A row with nothing on mapped labels becomes uniform."""
        summed = np.asarray(probs, dtype=float) @ self.matrix()
        mass = summed.sum(axis=1, keepdims=True)
        out = np.divide(summed, mass, out=np.full_like(summed, 1.0 / summed.shape[1]), where=mass > 0)
        return out, 1.0 - mass[:, 0]


def check_label_map(mapping: dict[str, str | None], run_labels, target_labels, *, source: str,
                    dataset: str) -> LabelMapping:
    """Every problem of a map at once: a run label the run does not have, a label the dataset does not have;
    then at least two dataset labels must have a counterpart (scoring needs two classes)."""
    run_labels, target_labels = tuple(run_labels), tuple(target_labels)
    problems = []
    for key, value in mapping.items():
        if key not in run_labels:
            problems.append(f"{key!r} is not a label of the run{did_you_mean(key, run_labels)}; "
                            f"the run's labels: {', '.join(run_labels)}")
        if value is not None and value not in target_labels:
            problems.append(f"{value!r} is not a label of {dataset}{did_you_mean(value, target_labels)}; "
                            f"its labels: {', '.join(target_labels)}")
    if problems:
        raise EmolabError(f"{source}: " + "\n  ".join(problems),
                          hint="map run labels to dataset labels, run_label:dataset_label, e.g. "
                               f"{run_labels[0]}:{target_labels[0]}")
    found = LabelMapping(run_labels, target_labels, {k: v for k, v in mapping.items() if v is not None})
    if len(found.scored) < 2:
        shared = f"only {found.scored[0]!r}" if found.scored else "no label"
        raise EmolabError(f"{source}: {shared} of {dataset} has a counterpart among the run's labels "
                          f"({', '.join(run_labels)}); scoring needs two classes or more",
                          hint=f"give --label-map run_label:dataset_label,... onto {dataset}'s labels "
                               f"({', '.join(target_labels)})")
    return found


def map_truth(y_true: np.ndarray, names, to: dict[str, int]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """True labels (ids into ``names``; or multi-hot) -> ``(keep, ids into the scored labels, excluded)``.
    Left out and counted: labels with no counterpart (per label), and multi-hot rows without exactly one label."""
    y_true = np.asarray(y_true)
    excluded: dict[str, Any] = {"no_counterpart": {}, "several_labels": 0, "no_label": 0}
    if y_true.ndim == 2:
        count = (y_true > 0).sum(axis=1)
        excluded["several_labels"], excluded["no_label"] = int((count > 1).sum()), int((count == 0).sum())
        single = count == 1
        ids = np.where(single, y_true.argmax(axis=1), -1)
    else:
        single, ids = np.ones(len(y_true), bool), y_true.astype(np.int64)
    lookup = np.array([to.get(n, -1) for n in names])
    mapped = np.where(single, lookup[np.clip(ids, 0, None)], -1)
    for i, name in enumerate(names):
        n = int((single & (ids == i) & (lookup[i] < 0)).sum())
        if n:
            excluded["no_counterpart"][name] = n
    keep = mapped >= 0
    return keep, mapped[keep], excluded


def excluded_total(excluded: dict[str, Any]) -> int:
    return sum(excluded["no_counterpart"].values()) + excluded["several_labels"] + excluded["no_label"]


# --- the --data section --------------------------------------------------------------------------------------


def data_config(spec: str, overrides: list[str] = ()):
    """``--data``: a registered dataset name (``sst2``) or a YAML file holding a data section (a whole config's
    ``data:``, or only the data keys); ``--set data.key=value`` overrides (``data.`` may be left out)."""
    from emolab.config import config_from_dict, read_yaml
    from emolab.data.registry import list_datasets

    path = Path(spec)
    if spec in list_datasets() and not path.is_file():
        section, source = {"name": spec}, f"--data {spec}"
    elif not path.is_file():
        raise EmolabError(f"--data {spec}: no such file, and no dataset of that name{did_you_mean(spec, list_datasets())}",
                          hint=f"give a YAML file with a data section (name: goemotions, taxonomy: ekman), or a "
                               f"dataset: {', '.join(list_datasets())}")
    else:
        raw = read_yaml(path)
        section, source = (raw.get("data") if isinstance(raw, dict) and "data" in raw else raw), str(path)
        if not isinstance(section, dict):
            raise ConfigError(source, ["expected a data section: the data keys (name: goemotions, taxonomy: ekman), "
                                       "or a config with a data: section"])
    overrides = [o if o.strip().startswith("data.") else f"data.{o.strip()}" for o in overrides]
    return config_from_dict({"data": section}, source=source, overrides=overrides).data


def output_name(cfg, split: str) -> str:
    """``<dataset>[-<choices that differ from the default>][-<stem of the split's own file>]-<split>``, e.g.
    ``goemotions-ekman-test``, ``csv-reviews-test``."""
    hints = typing.get_type_hints(type(cfg))
    parts = [cfg.name]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if typing.get_origin(hints[f.name]) is Literal and value != f.default:
            parts.append(str(value))
    own = getattr(cfg, f"{split}_file", None) or (cfg.path if cfg.path and Path(cfg.path).is_file() else None)
    if own:  # a user's own file: its name tells the corpora apart
        parts.append(Path(own).stem)
    return "-".join(parts + [split])


# --- the report -----------------------------------------------------------------------------------------------


@dataclass
class CrossCorpusReport:
    run: str
    dataset: str
    data: dict[str, Any]  # the resolved data section
    split: str
    name: str
    label_map: dict[str, str | None]  # every run label -> its dataset label, or None (dropped)
    map_source: str
    scored_labels: list[str]
    n_split: int  # examples in the split as loaded
    n: int  # examples scored
    excluded: dict[str, Any]  # left out here, per reason
    loader_dropped: dict[str, int]  # left out by the dataset's loader (its own policy), per info key
    dropped_mass: float  # mean probability the model put on dropped run labels (scored examples)
    moved: int  # scored examples whose top run label was dropped: their decision is the best mapped label
    metrics: dict[str, Any]
    in_domain: dict[str, Any] | None  # the run's own test split, its own labels (metrics.json)
    in_domain_mapped: dict[str, Any] | None  # the run's own test predictions through the same map
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _headline(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if m is None:
        return None
    ci = m.get("intervals", {})
    return {"n": m["n"], **{k: m.get(k) for k in HEADLINE},
            "intervals": {k: ci[k] for k in HEADLINE if k in ci}}


def side_by_side(r: CrossCorpusReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table: in-domain (own labels), in-domain mapped, the other corpus."""
    k = len(r.label_map)
    columns = [(f"in-domain test ({k} labels)", r.in_domain),
               (f"in-domain test, mapped ({len(r.scored_labels)})", r.in_domain_mapped),
               (f"{r.name}, mapped ({len(r.scored_labels)})", _headline(r.metrics))]
    columns = [(title, m) for title, m in columns if m]
    rows = [["n"] + [str(m["n"]) for _, m in columns]]
    for key in HEADLINE:
        rows.append([key.replace("_", " ")] + [with_interval(m.get(key), m["intervals"].get(key)) for _, m in columns])
    return ["metric"] + [t for t, _ in columns], rows


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def report_markdown(r: CrossCorpusReport) -> str:
    lines = [f"# {r.run} on {r.dataset}, {r.split} split", "",
             f"The run scored on a corpus it was not trained on, through the label map ({r.map_source}). "
             "Probabilities are summed over run labels that share a dataset label; the probability on dropped run "
             "labels is removed and each row renormalised.", "", "## Label map", ""]
    lines += _md_table(["run label", "dataset label"], [[k, v or "– (dropped)"] for k, v in r.label_map.items()])
    ex = r.excluded
    lines += ["", f"Scored: {r.n} of {r.n_split} examples of the {r.split} split, on {len(r.scored_labels)} classes "
                  f"({', '.join(r.scored_labels)})."]
    for name, n in ex["no_counterpart"].items():
        lines.append(f"- left out: {n} labelled {name!r} (no counterpart among the run's labels)")
    if ex["several_labels"]:
        lines.append(f"- left out: {ex['several_labels']} with several labels")
    if ex["no_label"]:
        lines.append(f"- left out: {ex['no_label']} with no label")
    for key, n in r.loader_dropped.items():
        lines.append(f"- left out earlier by the dataset's own loader (its `{key}` count): {n}")
    lines += [f"- probability on dropped run labels: {r.dropped_mass:.1%} on average; {r.moved} examples had a "
              "dropped label on top and were decided among the mapped labels", "", "## Side by side", ""]
    lines += _md_table(*side_by_side(r))
    method = r.metrics.get("intervals", {}).get("method")
    if method:
        lines += ["", f"In brackets: {method['confidence']:.0%} {method['kind']} ({method['resamples']} resamples, "
                      f"seed {method['seed']}). The in-domain mapped column applies the same map to the run's own "
                      "test predictions; macro-F1 is over the classes present."]
    ci = r.metrics.get("intervals", {}).get("per_class_f1", {})
    lines += ["", f"## Per class ({r.name})", ""]
    lines += _md_table(["label", "precision", "recall", "f1", "support"],
                       [[n, f"{row['precision']:.4f}", f"{row['recall']:.4f}", with_interval(row["f1"], ci.get(n)),
                         str(row["support"])] for n, row in r.metrics["per_class"].items()])
    lines += ["", "## Confusion matrix (rows true, columns predicted)", ""]
    lines += _md_table(["true \\ pred", *r.scored_labels],
                       [[n, *map(str, row)] for n, row in zip(r.scored_labels, r.metrics["confusion_matrix"])])
    return "\n".join(lines) + "\n"


# --- scoring ------------------------------------------------------------------------------------------------


def score_mapped(probs: np.ndarray, y_true: np.ndarray, mapping: LabelMapping, *, own_labels: bool = False,
                 resamples: int, seed: int) -> tuple[dict[str, Any], dict[str, Any], float, int]:
    """Metrics (with intervals) of run probabilities against true labels, both through ``mapping``; the true
    labels are the dataset's, or with ``own_labels`` the run's own (its test split). Also returns what was left
    out, the mean dropped probability and how many examples had a dropped label on top."""
    from emolab.evaluation import score

    to = {t: i for i, t in enumerate(mapping.scored)}
    if own_labels:
        to = {r: to[t] for r, t in mapping.pairs.items()}
    names = mapping.run_labels if own_labels else mapping.target_labels
    keep, y, excluded = map_truth(y_true, names, to)
    probs = np.asarray(probs)[keep]
    mapped, lost = mapping.probs(probs)
    moved = int(np.isin(probs.argmax(axis=1), [mapping.run_labels.index(d) for d in mapping.dropped]).sum())
    preds = Predictions(ids=np.arange(len(y)).astype(str), inputs=None, y_true=y, probs=mapped,
                        labels=LabelSet(mapping.scored))
    return score(preds, bootstrap=resamples, seed=seed), excluded, float(lost.mean()) if len(lost) else 0.0, moved


def _in_domain(run, mapping: LabelMapping, resamples: int, seed: int) -> tuple[dict | None, dict | None]:
    from emolab.evaluation import metrics_with_intervals

    test = metrics_with_intervals(run).get("test")
    if test is None or "accuracy" not in test:  # a multi-label run reports micro-F1: no like-for-like column
        test = None
    if not run.has("predictions_test.npz"):
        return _headline(test), None
    preds = run.predictions("test")
    if not map_truth(preds.y_true, mapping.run_labels, dict.fromkeys(mapping.pairs, 0))[0].any():
        return _headline(test), None  # no test example of a mapped class
    metrics, excluded, _, _ = score_mapped(preds.probs, preds.y_true, mapping, own_labels=True,
                                           resamples=resamples, seed=seed)
    return _headline(test), {**_headline(metrics), "excluded": excluded}


def evaluate_on(run_path: str | Path, data: str, *, overrides: list[str] = (), label_map: str | None = None,
                split: str = "test", name: str | None = None, overwrite: bool = False, precision: str = "fp32",
                tta: str | None = None, say: Say = print) -> CrossCorpusReport:
    """Score the run at ``run_path`` on the ``split`` of another dataset (``--data``) through a label map, and
    write ``RUN/evaluations/<name>.json`` and ``.md``."""
    from emolab.data import load_dataset
    from emolab.pipeline import inference_model
    from emolab.rundir import open_run, to_json

    t0 = time.perf_counter()
    run = open_run(run_path)
    card = run.card
    cfg = data_config(data, list(overrides))
    name = check_name(name or output_name(cfg, split), what="--name")
    out = run.path / "evaluations" / f"{name}.json"
    for path in (out, out.with_suffix(".md")):
        if path.exists() and not overwrite:
            raise EmolabError(f"{path} exists", hint="add --overwrite to replace it, or --name NAME to write another")
    ds = load_dataset(cfg, run.config.seed)
    if ds.modality != card.modality:
        raise EmolabError(f"the model of {run.path} reads {card.modality}s ({card.summary}); dataset {ds.name!r} "
                          f"holds {ds.modality}s", hint=f"give --data a dataset of {card.modality}s")
    examples = ds.split(split)
    source = "--label-map " + label_map if label_map else "the default map: the same label names"
    given = read_label_map(label_map) if label_map else default_label_map(card.labels.names, ds.labels.names)
    mapping = check_label_map(given, card.labels.names, ds.labels.names, source=source, dataset=ds.name)
    keep, _, _ = map_truth(examples.labels, ds.labels.names, {t: 0 for t in mapping.scored})
    if not keep.any():
        raise EmolabError(f"no example of {ds.name}'s {split} split has a label the map covers "
                          f"({', '.join(mapping.scored)})", hint="check --label-map and --split")
    resamples, seed = run.config.eval.bootstrap, run.config.seed
    say(f"{run.name} on {ds.name} {split}: {int(keep.sum())} of {len(examples)} examples, "
        f"{len(mapping.scored)} classes ({', '.join(mapping.scored)})")
    model = inference_model(run, precision=precision, tta=tta)
    probs = np.full((len(examples), len(card.labels)), np.nan)
    probs[keep] = model.predict_proba(examples.subset(np.flatnonzero(keep)).inputs,
                                      batch_size=run.config.eval.batch_size)
    metrics, excluded, lost, moved = score_mapped(probs, examples.labels, mapping, resamples=resamples, seed=seed)
    in_domain, in_domain_mapped = _in_domain(run, mapping, resamples, seed)
    report = CrossCorpusReport(
        run=run.name, dataset=ds.name + "".join(f" ({k} {v})" for k, v in ds.info.items() if k in (
            "taxonomy", "label_mode")), data=dataclasses.asdict(cfg), split=split, name=name,
        label_map={r: mapping.pairs.get(r) for r in mapping.run_labels}, map_source=source,
        scored_labels=list(mapping.scored), n_split=len(examples), n=metrics["n"], excluded=excluded,
        loader_dropped={k: v[split] for k, v in ds.info.items() if isinstance(v, dict) and isinstance(v.get(split), int)},
        dropped_mass=lost, moved=moved, metrics=metrics, in_domain=in_domain, in_domain_mapped=in_domain_mapped,
        seconds=round(time.perf_counter() - t0, 2))
    atomic_write(out, to_json(report.to_dict()) + "\n")
    atomic_write(out.with_suffix(".md"), report_markdown(report))
    say(f"wrote {out} and {out.with_suffix('.md').name}")
    return report
