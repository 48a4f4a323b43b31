"""Batches of texts that pad little: how every text model cuts its inputs into model calls.

Texts are taken longest first and cut into batches of at most ``batch_size`` where one more model call costs
less than the padding it saves. A batch costs ``call_tokens + size x its longest text`` (in tokens): an
encoder's work grows with the padded tokens, and each call has a fixed cost besides. The cut that minimises
the total is found exactly (dynamic programming over the sorted lengths). A sorted corpus cut this way is
mostly full batches; a server's micro-batch of 16 texts of 3 to 60 tokens becomes a few batches of similar
lengths instead of one padded to 60 (1.3x the texts/s of the int8 `make demo` export on 2 cores: see
docs/results.md). Safe only for models whose scores do not depend on batch-mates (``per_example`` ones run
one text at a time anyway).
"""

from __future__ import annotations

import numpy as np

# The fixed cost of one model call in tokens of work, measured on CPU (ONNX Runtime and PyTorch, MiniLM on
# 2 cores: 8-32 gave the same throughput within noise); a GPU call costs far more than a few tokens.
CPU_CALL_TOKENS = 16
GPU_CALL_TOKENS = 4096


def length_batches(lengths, batch_size: int, *, call_tokens: float = CPU_CALL_TOKENS) -> list[np.ndarray]:
    """Indices of each batch, in the order to run them (longest texts first)."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    if batch_size <= 1:
        return [order[i:i + 1] for i in range(len(order))]
    longest = lengths[order]  # a batch order[i:j] is padded to longest[i]
    best = np.zeros(len(order) + 1)
    cut = np.zeros(len(order) + 1, dtype=np.int64)
    for j in range(1, len(order) + 1):
        starts = np.arange(max(0, j - batch_size), j)
        cost = best[starts] + call_tokens + (j - starts) * longest[starts]
        k = int(np.argmin(cost))
        best[j], cut[j] = cost[k], starts[k]
    batches, j = [], len(order)
    while j > 0:
        batches.append(order[cut[j]:j])
        j = int(cut[j])
    return batches[::-1]
