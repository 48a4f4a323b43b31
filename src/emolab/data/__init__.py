"""Datasets: a registry by name, each with a descriptor (:class:`DatasetSpec`: label set, splits, citation,
published scores), its own config section and the files it comes from. Importing this package registers the
built-in datasets."""

from emolab.data import files, images, text  # noqa: F401  (registration)
from emolab.data.registry import (DataConfig, DatasetSpec, PublishedScore, dataset_config, dataset_spec, list_datasets,
                                  load_dataset, register_dataset)

__all__ = ["DataConfig", "DatasetSpec", "PublishedScore", "dataset_config", "dataset_spec", "list_datasets",
           "load_dataset", "register_dataset"]
