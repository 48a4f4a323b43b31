"""Datasets by name: ``@register_dataset("name", config=...)`` on a loader, ``load_dataset(config)`` to use one.

Each dataset owns its config section: a :class:`DataConfig` subclass with its variant keys (CSV columns,
the GoEmotions taxonomy, the FER+ label mode, ...). This module is a leaf: the built-in datasets register
themselves when :mod:`emolab.data` is imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
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

    def second_opinion(self, ids) -> dict[str, Any] | None:
        """Independent labels for the same examples, where the dataset has them (FER2013: FER+'s ten
        annotators): ``{"source", "labels": (N,) ids in this dataset's label set, -1 where there is none,
        "excluded": {reason: count}}``; None when it has none."""
        return None

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> DataConfig:
        """Rebuild from a saved run's config, ignoring keys this dataset does not own."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})


Loader = Callable[[DataConfig, int], Dataset]
_DATASETS: dict[str, tuple[Loader, type[DataConfig]]] = {}


def register_dataset(name: str, *, config: type[DataConfig] = DataConfig) -> Callable[[Loader], Loader]:
    """``@register_dataset("csv", config=CsvConfig)`` on a loader ``(cfg, seed) -> Dataset``."""

    def wrap(fn: Loader) -> Loader:
        _DATASETS[name] = (fn, config)
        return fn

    return wrap


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def dataset_config_class(name: str) -> type[DataConfig]:
    if name not in _DATASETS:
        raise unknown_name("dataset", name, list(_DATASETS))
    return _DATASETS[name][1]


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
