"""Lower floating-point precision: the same weights cast to fp16 or bf16 (no training)."""

from __future__ import annotations

import copy

PRECISIONS = ("fp32", "fp16", "bf16")


def at_precision(model, precision: str):
    """A copy of ``model`` whose weights are cast to ``precision``; the original is untouched."""
    half = copy.deepcopy(model)
    half.to_precision(precision)
    return half
