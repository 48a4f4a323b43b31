"""Models by name: ``@register_model("name")`` on a classifier class, ``create_model`` / ``load_model``.

Every classifier offers the same small interface, so training, evaluation, analysis and reports never
care which kind of model they hold:

- ``from_config(model_cfg, labels)`` builds an untrained model;
- ``fit(dataset, run_cfg, log)`` trains it and returns the per-epoch history;
- ``predict_proba(inputs, batch_size)`` returns ``(N, K)`` probabilities;
- ``save(folder)`` / ``load(folder)`` write and read everything needed to predict offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from emolab.config import ModelConfig
from emolab.errors import EmolabError, unknown_name
from emolab.records import LabelSet

MODEL_FILE = "emolab_model.json"
_MODELS: dict[str, type] = {}


class Classifier(Protocol):
    name: str
    labels: LabelSet

    @classmethod
    def from_config(cls, cfg: ModelConfig, labels: LabelSet) -> Classifier: ...

    def fit(self, dataset: Any, run_cfg: Any, log: Any) -> list: ...

    def predict_proba(self, inputs: Any, batch_size: int = 64) -> np.ndarray: ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def load(cls, folder: Path) -> Classifier: ...


def register_model(name: str):
    def wrap(cls: type) -> type:
        cls.name = name
        _MODELS[name] = cls
        return cls

    return wrap


def _import_models() -> None:
    from emolab.models import classical  # noqa: F401  (each module registers its models)

    try:
        from emolab.models import reference, text, vision  # noqa: F401
    except ImportError:  # pragma: no cover - torch/transformers missing
        pass
    try:  # compressed models: pruned transformers, ONNX Runtime
        from emolab.models import onnx, pruned  # noqa: F401
    except ImportError:  # pragma: no cover - onnxruntime missing
        pass


def list_models() -> list[str]:
    _import_models()
    return sorted(_MODELS)


def create_model(cfg: ModelConfig, labels: LabelSet) -> Classifier:
    _import_models()
    if cfg.name not in _MODELS:
        raise unknown_name("model", cfg.name, list(_MODELS))
    return _MODELS[cfg.name].from_config(cfg, labels)


def write_model_card(folder: Path, name: str, labels: LabelSet, extra: dict | None = None) -> None:
    """The small JSON that tells ``load_model`` which class reads this folder."""
    folder.mkdir(parents=True, exist_ok=True)
    card = {"model": name, "labels": labels.to_dict(), **(extra or {})}
    (folder / MODEL_FILE).write_text(json.dumps(card, indent=2))


def read_model_card(folder: Path) -> dict:
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise EmolabError(f"{folder} holds no emolab model ({MODEL_FILE} missing)",
                          hint="give a run directory written by `emolab run`, or its model/ folder")
    return json.loads(path.read_text())


def load_model(folder: str | Path) -> Classifier:
    folder = Path(folder)
    if (folder / "model" / MODEL_FILE).is_file():
        folder = folder / "model"
    card = read_model_card(folder)
    _import_models()
    if card["model"] not in _MODELS:
        raise unknown_name("model", card["model"], list(_MODELS))
    return _MODELS[card["model"]].load(folder)
