"""emolab: train, evaluate, compress and serve emotion classifiers. ``emolab.Predictor`` scores DataFrames and
lists of texts with a saved model (loaded on first use of the name, so ``import emolab`` stays light)."""

from __future__ import annotations

__all__ = ["Predictor"]


def __getattr__(name: str):
    if name == "Predictor":
        from emolab.scoring.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'emolab' has no attribute {name!r}")
