"""Datasets by name: ``@register_dataset("name")`` on a loader, ``load_dataset(config)`` to use one."""

from __future__ import annotations

from typing import Callable

import numpy as np

from emolab.config import DataConfig
from emolab.errors import unknown_name
from emolab.records import Dataset, Split

Loader = Callable[[DataConfig, int], Dataset]
_DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def wrap(fn: Loader) -> Loader:
        _DATASETS[name] = fn
        return fn

    return wrap


def list_datasets() -> list[str]:
    _import_loaders()
    return sorted(_DATASETS)


def _import_loaders() -> None:
    from emolab.data import files, images, text  # noqa: F401  (each module registers its datasets)


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
    _import_loaders()
    if cfg.name not in _DATASETS:
        raise unknown_name("dataset", cfg.name, list(_DATASETS))
    ds = _DATASETS[cfg.name](cfg, seed)
    if cfg.max_train_examples is None and cfg.max_eval_examples is None:
        return ds
    splits = {
        name: subsample(split, cfg.max_train_examples if name == "train" else cfg.max_eval_examples, seed)
        for name, split in ds.splits.items()
    }
    return Dataset(ds.name, ds.labels, splits, ds.modality, ds.files, ds.info)
