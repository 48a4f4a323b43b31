"""Datasets: a registry by name, each with a fixed label set, and the files they come from."""

from emolab.data.registry import list_datasets, load_dataset, register_dataset

__all__ = ["list_datasets", "load_dataset", "register_dataset"]
