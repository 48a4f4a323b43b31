"""Short fine-tunes after compression (recovery after pruning, training a distilled student).

They reuse the run's own training recipe (``emolab.training.fit``) with fewer epochs, a chosen learning
rate and optionally a capped number of steps or training examples; nothing is checkpointed to disk.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from emolab.config import RunConfig
from emolab.records import Dataset


def subsample_train(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """The dataset with at most ``n`` training examples (a seeded random subset)."""
    train = ds.split("train")
    if n is None or n >= len(train):
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(len(train))[:n])
    return dataclasses.replace(ds, splits={**ds.splits, "train": train.subset(idx)})


class WithTargets:
    """A training set whose examples also carry ``targets`` (e.g. a teacher's logits)."""

    def __init__(self, base, targets: np.ndarray):
        self.base, self.targets = base, targets

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        return {**self.base[i], "targets": self.targets[i]}

    def lengths(self) -> list[int]:
        return self.base.lengths()


def _collate_with_targets(collate: Callable) -> Callable:
    import torch

    def wrapped(items: list[dict]) -> dict:
        out = collate(items)
        if "targets" in items[0]:
            out["targets"] = torch.as_tensor(np.stack([it["targets"] for it in items]), dtype=torch.float32)
        return out

    return wrapped


def finetune(model, ds: Dataset, cfg: RunConfig, *, epochs: int, lr: float, max_steps: int | None = None,
             targets: np.ndarray | None = None, loss: Callable | None = None) -> list:
    """Train ``model.module`` in place on ``ds`` for a few epochs; returns the epoch history.

    ``targets`` (one row per training example) and ``loss(logits, labels, targets)`` replace the
    default cross-entropy on hard labels (distillation)."""
    from emolab.training import fit

    task = model.task(ds)
    if targets is not None:
        task.train_set = WithTargets(task.train_set, targets)
        task.collate = _collate_with_targets(task.collate)
    task.loss = loss
    train = dataclasses.replace(cfg.train, epochs=epochs, lr=lr, max_steps=max_steps, patience=None,
                                keep_checkpoints=False)
    history = fit(task, dataclasses.replace(cfg, train=train))
    model.module = task.module
    model.module.eval()
    return history
