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


def subsample(ds: Dataset, split: str, n: int | None, seed: int) -> Dataset:
    """The dataset with at most ``n`` examples in ``split`` (a seeded random subset, in file order)."""
    part = ds.split(split)
    if n is None or n >= len(part):
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(len(part))[:n])
    return dataclasses.replace(ds, splits={**ds.splits, split: part.subset(idx)})


class WithTargets:
    """A training set whose examples also carry ``targets`` (e.g. a teacher's logits)."""

    def __init__(self, base, targets: np.ndarray):
        self.base, self.targets = base, targets

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        source = self.base.positions[i] if hasattr(self.base, "positions") else i  # oversampled copies
        return {**self.base[i], "targets": self.targets[source]}

    def start_epoch(self, epoch: int) -> None:  # augmenting training sets draw afresh each epoch
        if hasattr(self.base, "start_epoch"):
            self.base.start_epoch(epoch)

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

    task = model.task(ds, cfg)
    if targets is not None:
        task.train_set = WithTargets(task.train_set, targets)
        task.collate = _collate_with_targets(task.collate)
    task.loss = loss
    # AdamW with a plain linear decay and no warmup, whatever the run used: a few hundred steps from
    # trained weights need neither warmup nor a cyclic schedule.
    train = dataclasses.replace(cfg.train, epochs=epochs, lr=lr, max_steps=max_steps, patience=None,
                                keep_checkpoints=False, optimizer="adamw", scheduler="linear", warmup_ratio=0.0)
    history = fit(task, dataclasses.replace(cfg, train=train))
    model.module = task.module
    model.module.eval()
    return history
