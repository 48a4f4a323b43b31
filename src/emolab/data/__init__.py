"""Datasets: a registry by name, each with a fixed label set, its own config section and the files it
comes from. Importing this package registers the built-in datasets."""

from emolab.data import files, images, text  # noqa: F401  (registration)
from emolab.data.registry import DataConfig, dataset_config, list_datasets, load_dataset, register_dataset

__all__ = ["DataConfig", "dataset_config", "list_datasets", "load_dataset", "register_dataset"]
