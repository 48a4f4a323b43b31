"""Typed records that flow between the pipeline's stages. Imports nothing from emolab but errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emolab.errors import DataError


@dataclass(frozen=True)
class LabelSet:
    """A fixed, ordered set of class names: label ids are positions in ``names``, never file order."""

    names: tuple[str, ...]
    multi_label: bool = False

    def __post_init__(self):
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate label names in {self.names}")
        if len(self.names) < 2:
            raise ValueError(f"a label set needs at least 2 labels, got {self.names}")

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise DataError(
                f"unknown label {name!r}", hint=f"valid labels: {', '.join(self.names)}"
            ) from None

    def decide(self, probs: np.ndarray, thresholds: Any = 0.5) -> list[str]:
        """Probabilities -> the decided label of each row: the arg-max, or for multi-label sets every label at
        or over its threshold, joined by ``;``. A row of NaN (an input that could not be scored) decides ``""``."""
        probs = np.asarray(probs, dtype=float)
        if probs.ndim == 1:
            probs = probs[None]
        scored = ~np.isnan(probs).any(axis=1)
        if self.multi_label:
            over = np.nan_to_num(probs, nan=-1.0) >= np.broadcast_to(np.asarray(thresholds, dtype=float),
                                                                    (len(self.names),))
            return [";".join(n for n, on in zip(self.names, row) if on) if ok else ""
                    for row, ok in zip(over, scored)]
        best = np.nan_to_num(probs, nan=-1.0).argmax(axis=1)
        return [self.names[i] if ok else "" for i, ok in zip(best, scored)]

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "multi_label": self.multi_label}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelSet:
        return cls(tuple(d["names"]), bool(d.get("multi_label", False)))


@dataclass(frozen=True)
class Split:
    """One split of a dataset: ids, inputs (texts, or uint8 images (N, H, W)) and labels.

    ``labels`` is ``(N,)`` int class ids, or ``(N, K)`` 0/1 for a multi-label set. ``soft_labels``
    optionally holds a target distribution ``(N, K)`` (e.g. FER+ annotator votes).
    """

    ids: np.ndarray
    inputs: Any
    labels: np.ndarray
    soft_labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray) -> Split:
        inputs = self.inputs[index] if isinstance(self.inputs, np.ndarray) else [self.inputs[i] for i in index]
        soft = None if self.soft_labels is None else self.soft_labels[index]
        return Split(self.ids[index], inputs, self.labels[index], soft)


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: its splits, label set, modality and the files it came from."""

    name: str
    labels: LabelSet
    splits: dict[str, Split]
    modality: str = "text"
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(
                f"dataset {self.name!r} has no split {name!r}", hint=f"splits: {', '.join(self.splits)}"
            )
        return self.splits[name]


@dataclass(frozen=True)
class Predictions:
    """A model's output on one split: the input of every metric, analysis and report function."""

    ids: np.ndarray
    inputs: list[str] | None
    y_true: np.ndarray  # (N,) class ids, or (N, K) multi-hot
    probs: np.ndarray  # (N, K)
    labels: LabelSet
    split: str = "test"
    target_probs: np.ndarray | None = None

    def __post_init__(self):
        if self.probs.ndim != 2 or self.probs.shape[1] != len(self.labels):
            raise ValueError(f"probs must be (N, {len(self.labels)}), got {self.probs.shape}")
        if len(self.y_true) != len(self.probs):
            raise ValueError(f"{len(self.y_true)} labels but {len(self.probs)} rows of probabilities")

    @property
    def y_pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


@dataclass
class EpochRecord:
    """One line of ``history.jsonl``."""

    epoch: int
    step: int
    lr: float
    train: dict[str, float]
    validation: dict[str, float]
    seconds: float
    grad_norm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "lr": self.lr,
            "grad_norm": self.grad_norm,
            "seconds": self.seconds,
            **{f"train_{k}": v for k, v in self.train.items()},
            **{f"val_{k}": v for k, v in self.validation.items()},
        }



FACE_SIDE = 48  # pixels: FER2013's face side, and the side of any face model whose card gives none

@dataclass(frozen=True)
class ModelCard:
    """What a saved model says about itself (``model/emolab_model.json``): enough for reports, ``compare``,
    analysis and serving to know how to feed it and how to describe it, without loading it.

    ``modality`` is ``text`` or ``image``; ``input`` describes one input (``{"kind": "text", "max_length": 128}``
    or ``{"kind": "image", "side": 48, "channels": 1}``); ``training`` says how it learns (``loop``: the
    gradient training loop and its ``train`` section; ``one-pass``: fitted in one call; ``pretrained``: loaded,
    not trained; ``none``: a deployed copy); ``citation`` keys the report's reference list."""

    model: str
    labels: LabelSet
    modality: str
    input: dict[str, Any]
    summary: str
    family: str
    training: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    citation: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the model's own fields (config, tta, ONNX details, ...)

    FIELDS = ("model", "labels", "modality", "input", "summary", "family", "training", "hyperparameters", "citation")

    @property
    def image(self) -> bool:
        return self.modality == "image"

    @property
    def side(self) -> int:
        """The face side in pixels an image model takes (``FACE_SIDE`` for a card that gives none)."""
        return int(self.input.get("side", FACE_SIDE))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "labels": self.labels.to_dict(), "modality": self.modality, "input": self.input,
                "summary": self.summary, "family": self.family, "training": self.training,
                "hyperparameters": self.hyperparameters, "citation": self.citation, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        return cls(model=d["model"], labels=LabelSet.from_dict(d["labels"]), modality=d["modality"], input=d["input"],
                   summary=d["summary"], family=d["family"], training=d["training"],
                   hyperparameters=d.get("hyperparameters", {}), citation=d.get("citation"),
                   extra={k: v for k, v in d.items() if k not in cls.FIELDS})


class TrainLogger:
    """Where a model's training reports, as it goes: each finished epoch, the optimizer-step rows of that
    epoch (learning rate, gradient norm, loss), and a resume from a checkpoint (the step and history it
    restored). The default methods ignore everything; ``emolab run`` writes the run directory and trackers."""

    def on_epoch(self, record: EpochRecord) -> None:
        pass

    def on_steps(self, rows: list[dict[str, Any]]) -> None:
        pass

    def on_resume(self, step: int, history: list[EpochRecord]) -> None:
        pass
