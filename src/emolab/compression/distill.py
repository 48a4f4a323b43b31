"""Knowledge distillation: a student with half the teacher's layers learns the teacher's soft targets.

The student starts as a copy of the teacher that keeps every second transformer layer (1, 3, 5 of six:
the last layer stays, so the head still sees the representation it was trained on), then trains on
``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)``, where ``_T`` is a
softmax at temperature ``T`` (Hinton et al., 2015); ``T^2`` keeps the gradient scale independent of ``T``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from emolab.compression.pruning import _layers


def student_from_teacher(model, keep: list[int] | None = None):
    """A copy of ``model`` keeping only the transformer layers ``keep`` (default: every second one,
    ending with the last)."""
    student = copy.deepcopy(model)
    layers = _layers(student.module)
    n = len(layers)
    keep = list(range(n - 1, -1, -2))[::-1] if keep is None else keep
    student.module.encoder.encoder.layer = nn.ModuleList([layers[i] for i in keep])
    student.module.encoder.config.num_hidden_layers = len(keep)
    return student, keep


def teacher_logits(model, inputs, *, batch_size: int = 64) -> np.ndarray:
    """Log-probabilities of the teacher: logits up to a per-example constant, which softmax ignores."""
    probs = model.predict_proba(inputs, batch_size=batch_size)
    return np.log(np.clip(probs, 1e-12, None)).astype(np.float32)


def distillation_loss(*, temperature: float, alpha: float):
    """``loss(student_logits, labels, teacher_logits)`` for :func:`emolab.training.fit`."""
    t = float(temperature)

    def loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        logits = logits.float()
        hard = nn.functional.cross_entropy(logits, labels)
        if targets is None:
            return hard
        soft = nn.functional.kl_div(torch.log_softmax(logits / t, -1), torch.log_softmax(targets / t, -1),
                                    reduction="batchmean", log_target=True) * t * t
        return alpha * soft + (1 - alpha) * hard

    return loss
