"""How text models cut inputs into model calls: every text once, at most batch_size per call, similar lengths
together, and the cut that minimises call cost plus padding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from emolab.models.length_batches import length_batches


def _cost(batches, lengths, call_tokens):
    return sum(call_tokens + len(b) * lengths[b].max() for b in batches)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_every_text_once_and_no_batch_too_big(batch_size):
    lengths = np.random.default_rng(0).integers(3, 60, size=101)
    batches = length_batches(lengths, batch_size)
    assert sorted(np.concatenate(batches).tolist()) == list(range(101))
    assert max(len(b) for b in batches) <= batch_size
    assert [lengths[b].max() for b in batches] == sorted((lengths[b].max() for b in batches), reverse=True)


def test_a_mixed_micro_batch_is_split_and_a_uniform_one_is_not():
    mixed = np.array([60, 5, 6, 58, 4, 5, 7, 59])  # three long texts, five short ones
    batches = length_batches(mixed, 32, call_tokens=16)
    assert sorted(sorted(mixed[b].tolist()) for b in batches) == [[4, 5, 5, 6, 7], [58, 59, 60]]
    assert len(length_batches(np.full(32, 20), 32, call_tokens=16)) == 1


def test_the_cut_is_the_cheapest_one():
    """Against every cut of the sorted order into consecutive batches (brute force on small inputs)."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        lengths = rng.integers(1, 40, size=int(rng.integers(1, 9)))
        batch_size, call = int(rng.integers(2, 5)), float(rng.integers(0, 30))
        got = _cost(length_batches(lengths, batch_size, call_tokens=call), lengths, call)
        order = np.argsort(-lengths, kind="stable")
        n, best = len(order), float("inf")
        for cuts in itertools.product([0, 1], repeat=n - 1):
            bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
            parts = [order[a:b] for a, b in zip(bounds, bounds[1:])]
            if max(len(p) for p in parts) <= batch_size:
                best = min(best, _cost(parts, lengths, call))
        assert got == pytest.approx(best)


def test_no_texts_no_batches():
    assert length_batches(np.array([], dtype=int), 32) == []
