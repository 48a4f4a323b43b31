"""Datasets by name: ``@register_dataset(SPEC, config=...)`` on a loader, ``load_dataset(config)`` to use one.

A registered dataset describes itself, so reports, ``compare``, ``data stats`` and the CLI never ask for its
name:

- a :class:`DatasetSpec` beside its loader: name, modality, fixed label set and taxonomies, splits and what
  published tables call its test split, citation, Hub id, published scores, and where a second opinion on its
  labels comes from; ``dataset_spec(name)`` reads it without loading any data (nor torch);
- its own config section: a :class:`DataConfig` subclass with its variant keys (CSV columns, the GoEmotions
  taxonomy, the FER+ label mode, ...).

This module is a leaf: the built-in datasets register themselves when :mod:`emolab.data` is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from emolab.errors import unknown_name
from emolab.records import Dataset, Split


@dataclass
class DataConfig:
    """The ``data`` section every dataset's config extends."""

    name: str = "emotion"  # a registered dataset: emotion, goemotions, sst2, csv, fer2013, ferplus, imagefolder
    path: Optional[str] = None  # folder (or single file for csv) holding the files; else EMOLAB_DATA_DIR / cache / download
    max_train_examples: Optional[int] = None  # stratified subsample, for smoke runs
    max_eval_examples: Optional[int] = None  # stratified subsample of validation and test, for smoke runs
    download: bool = True  # fetch from the canonical online source when no local copy exists

    def check(self, problems: list[str]) -> None:
        """Append value problems (``data.key: ...``) that types alone cannot express."""
        for key in ("validation_ratio", "test_ratio"):
            value = getattr(self, key, None)
            if isinstance(value, float) and not 0.0 <= value < 1.0:
                problems.append(f"data.{key}: must be in [0, 1), got {value}")
        for key in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                problems.append(f"data.{key}: must be at least 1 (or null: every example), got {value}")


@dataclass(frozen=True)
class PublishedScore:
    """One published figure on a dataset, with the split and averaging its source states."""

    model: str
    metric: str  # accuracy | macro_f1 | ...: a key of the run's metrics
    value: float
    split: str  # the split, then the averaging: "test, macro, multi-label"
    source: str
    variant: Optional[str] = None  # the taxonomy it was measured on (GoEmotions); None: the dataset has one


def no_second_opinion(cfg: DataConfig, ids: Any) -> None:
    """The second opinion of a dataset that has none."""
    return None


SecondOpinion = Callable[[DataConfig, Any], Optional[dict]]


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset says about itself: read by reports, ``compare``, ``data stats`` and the CLI instead of
    its name. Facts only (no files are read), so describing a dataset imports no data and no torch."""

    name: str
    modality: str = "text"  # text | image
    labels: Optional[tuple[str, ...]] = None  # the fixed label set; None when the files or the taxonomy give it
    taxonomies: tuple[str, ...] = ()  # label sets chosen by data.taxonomy; the first is the default
    multi_label_policies: tuple[str, ...] = ()  # values of data.multi_label_policy (examples with several labels)
    splits: tuple[str, ...] = ("train", "validation", "test")
    test_split: str = "test"  # the split scored as the test set
    published_test_split: str = "test"  # what published tables call that split (SST-2: the GLUE dev set)
    published_note: Optional[str] = None  # a sentence the report adds under the published comparison
    citation: Optional[str] = None
    hub_id: Optional[str] = None  # its Hugging Face Hub id, for model cards
    domain: Optional[str] = None  # where its texts come from, for model cards
    published: tuple[PublishedScore, ...] = ()
    # independent labels for the same examples, where the dataset has them (FER2013: FER+'s ten annotators):
    # (data config, ids) -> {"source", "labels": (N,) ids in this label set, -1 where none, "excluded": {reason: n}}
    second_opinion: SecondOpinion = no_second_opinion

    def variant(self, data_cfg: dict) -> Optional[str]:
        """The taxonomy a (saved) data section picks, or None for a dataset with one label set."""
        return data_cfg.get("taxonomy", self.taxonomies[0]) if self.taxonomies else None

    def published_scores(self, data_cfg: dict) -> list[PublishedScore]:
        """The published figures on the label set a (saved) data section picks."""
        variant = self.variant(data_cfg)
        return [p for p in self.published if p.variant is None or p.variant == variant]

    def leaderboard_name(self, name: str, data_cfg: dict) -> str:
        """The dataset a run was scored on as its leaderboard groups it: ``name`` with the saved section's
        taxonomy and file names (runs saved before each dataset had its own section hold every key)."""
        for key in ("taxonomy", "path", "train_file", "root"):
            if data_cfg.get(key) and str(data_cfg[key]) not in name:
                name += f" ({Path(str(data_cfg[key])).name if key != 'taxonomy' else data_cfg[key]})"
        return name


Loader = Callable[[DataConfig, int], Dataset]
_DATASETS: dict[str, tuple[Loader, type[DataConfig], DatasetSpec]] = {}


def register_dataset(spec: DatasetSpec | str, *, config: type[DataConfig] = DataConfig) -> Callable[[Loader], Loader]:
    """``@register_dataset(CSV, config=CsvConfig)`` on a loader ``(cfg, seed) -> Dataset``; a bare name registers
    a dataset that says nothing more about itself than its name."""
    spec = DatasetSpec(spec) if isinstance(spec, str) else spec

    def wrap(fn: Loader) -> Loader:
        _DATASETS[spec.name] = (fn, config, spec)
        return fn

    return wrap


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def dataset_config_class(name: str) -> type[DataConfig]:
    if name not in _DATASETS:
        raise unknown_name("dataset", name, list(_DATASETS))
    return _DATASETS[name][1]


def dataset_spec(name: str) -> DatasetSpec:
    """The descriptor of dataset ``name``; a name not registered here (a run of a dataset whose module is not
    imported) gets one that knows only its name, so its runs still open, compare and report."""
    return _DATASETS[name][2] if name in _DATASETS else DatasetSpec(name)


def dataset_config(name: str, **values: Any) -> DataConfig:
    """The config section of dataset ``name`` with ``values`` set, e.g. ``dataset_config("csv", path="x.csv")``."""
    return dataset_config_class(name)(name=name, **values)


def subsample(split: Split, n: int | None, seed: int) -> Split:
    """A seeded subsample of ``n`` examples, stratified by class for single-label data."""
    if n is None or n >= len(split):
        return split
    rng = np.random.default_rng(seed)
    if split.labels.ndim == 1:
        from sklearn.model_selection import train_test_split

        try:
            keep, _ = train_test_split(np.arange(len(split)), train_size=n, random_state=seed,
                                       stratify=split.labels)
        except ValueError:  # a class too rare to stratify
            keep = rng.choice(len(split), size=n, replace=False)
    else:
        keep = rng.choice(len(split), size=n, replace=False)
    return split.subset(np.sort(keep))


def load_dataset(cfg: DataConfig, seed: int = 42) -> Dataset:
    """Load the dataset ``cfg.name`` names, then apply the config's subsampling limits."""
    if cfg.name not in _DATASETS:
        raise unknown_name("dataset", cfg.name, list(_DATASETS))
    ds = _DATASETS[cfg.name][0](cfg, seed)
    if cfg.max_train_examples is None and cfg.max_eval_examples is None:
        return ds
    splits = {
        name: subsample(split, cfg.max_train_examples if name == "train" else cfg.max_eval_examples, seed)
        for name, split in ds.splits.items()
    }
    return Dataset(ds.name, ds.labels, splits, ds.modality, ds.files, ds.info)
